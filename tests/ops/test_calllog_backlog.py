"""The call-log backlog the gateway reports at each scrape (``CallLogBuffer.backlog``): what
waits in the rings and the spool files, read from the spool directory so any worker reports
every worker's; back to zero once Redis takes it."""

from __future__ import annotations

import asyncio

import redis as redis_lib
from django.conf import settings

from gateway.calllog import CallLogBuffer, records_of
from gateway.callrecord import CallRecord
from portal.embedded_redis import free_port


def record(i: int) -> CallRecord:
    return CallRecord(request_id=f"backlog-{i}", time=1_700_000_000.0 + i, method="GET", path="/x", status=200)


async def wait_for(predicate, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def test_backlog_counts_unshipped_ring_bytes_of_every_ring_and_spooled_files(tmp_path):
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    spool = tmp_path / "spool"
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.delete("backlog-test")

    async def scenario() -> tuple[dict, dict, dict, dict]:
        # Two "workers" sharing a spool directory, Redis away: one with a ring, one without
        # (its records overflow to memory, then to its spool file).
        ringed = CallLogBuffer(unreachable, "calls", spool, flush_interval=0.01, ring_bytes=1 << 16)
        ringless = CallLogBuffer(unreachable, "calls", spool, max_batch=5, flush_interval=0.01, ring_bytes=0)
        await ringed.start()
        await ringless.start()
        empty = ringed.backlog()
        for i in range(20):
            ringed.append(record(i))
            ringless.append(record(100 + i))
        assert await wait_for(lambda: ringless.backlog()["spool"] > 0)
        while_down = ringed.backlog()
        seen_by_other = ringless.backlog()
        await ringless.stop()
        await ringed.stop()
        # Redis back: a buffer on the same directory reclaims the ring and the spool and ships them.
        shipper = CallLogBuffer(settings.REDIS_URL, "backlog-test", spool, flush_interval=0.01)
        await shipper.start()
        assert await wait_for(lambda: shipper.backlog() == {"ring": 0, "spool": 0}, timeout=10)
        after = shipper.backlog()
        await shipper.stop()
        return empty, while_down, seen_by_other, after

    empty, while_down, seen_by_other, after = asyncio.run(scenario())
    assert empty == {"ring": 0, "spool": 0}
    one_record = len(b'{"request_id":"backlog-0"}')  # a lower bound on a record's bytes
    assert while_down["ring"] >= 20 * one_record
    assert while_down["spool"] >= 20 * one_record
    assert seen_by_other == while_down, "each buffer reports the whole directory, not only its own records"
    assert after == {"ring": 0, "spool": 0}
    shipped = [r["request_id"] for _id, fields in client.xrange("backlog-test") for r in records_of(fields)]
    assert sorted(shipped) == sorted([f"backlog-{i}" for i in range(20)] + [f"backlog-{100 + i}" for i in range(20)])
    client.close()
