"""The call-log buffer in-process against a real Redis it can lose and get back."""

import asyncio

import orjson
import pytest
import redis as redis_lib

from gateway.calllog import CallLogBuffer, records_of
from portal import embedded_redis


def records(start, n):
    return [{"request_id": f"r{i}", "status": 200} for i in range(start, start + n)]


def stream_ids(client, stream):
    return [r["request_id"] for _id, f in client.xrange(stream) for r in records_of(f)]


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own (the session's is shared), stopped at the end."""
    port = embedded_redis.free_port()
    server = embedded_redis.start(port, tmp_path / "redis")
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait()


def test_batches_spool_while_redis_is_down_and_replay_in_order_after(tmp_path):
    port = embedded_redis.free_port()
    server = embedded_redis.start(port, tmp_path / "redis", persist=True)
    url = f"redis://127.0.0.1:{port}/0"

    async def scenario():
        nonlocal server
        buffer = CallLogBuffer(url, "calls", tmp_path / "spool", max_batch=10, flush_interval=0.01)
        await buffer.start()
        for r in records(0, 25):
            buffer.append(r)
        await asyncio.sleep(0.3)
        server.terminate()
        server.wait()
        for r in records(25, 25):
            buffer.append(r)
        await asyncio.sleep(0.3)
        spooled = list((tmp_path / "spool").glob("*.jsonl"))
        server = embedded_redis.start(port, tmp_path / "redis", persist=True)
        for r in records(50, 5):
            buffer.append(r)
        await asyncio.sleep(1.5)
        await buffer.stop()
        return spooled

    spooled = asyncio.run(scenario())
    try:
        assert spooled, "nothing was spooled while Redis was down"
        ids = stream_ids(redis_lib.Redis.from_url(url), "calls")
        assert ids == [f"r{i}" for i in range(55)]
        assert not list((tmp_path / "spool").glob("*.jsonl"))
    finally:
        server.terminate()
        server.wait()


def test_stop_flushes_what_is_pending(tmp_path, own_redis):
    async def scenario():
        buffer = CallLogBuffer(own_redis, "calls", tmp_path / "spool", flush_interval=60)
        await buffer.start()
        for r in records(0, 7):
            buffer.append(r)
        await buffer.stop()

    asyncio.run(scenario())
    assert stream_ids(redis_lib.Redis.from_url(own_redis), "calls") == [f"r{i}" for i in range(7)]


def test_a_replayed_batch_is_not_applied_twice(tmp_path, own_redis):
    async def scenario():
        buffer = CallLogBuffer(own_redis, "calls", tmp_path / "spool")
        await buffer.start()
        payload = orjson.dumps(records(0, 3))
        first = await buffer._ship("batch-1", payload, 3)
        again = await buffer._ship("batch-1", payload, 3)  # as after a lost answer
        await buffer.stop()
        return first, again

    assert asyncio.run(scenario()) == (True, True)
    assert stream_ids(redis_lib.Redis.from_url(own_redis), "calls") == ["r0", "r1", "r2"]
