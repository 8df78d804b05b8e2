"""The call-log buffer in-process against a real Redis it can lose and get back, and real
processes that die while holding records."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis as redis_lib

from gateway import metrics
from gateway.calllog import CallLogBuffer, records_of
from gateway.callrecord import CallRecord
from portal import embedded_redis

ROOT = Path(__file__).resolve().parents[2]


def make(i):
    return CallRecord(request_id=f"r{i}", time=1_700_000_000.0 + i, method="GET", path=f"/api/echo/{i}", status=200)


def records(start, n):
    return [make(i) for i in range(start, start + n)]


def names(start, n):
    return [f"r{i}" for i in range(start, start + n)]


def stream_ids(client, stream):
    return [r["request_id"] for _id, f in client.xrange(stream) for r in records_of(f)]


def spool_line(batch_id, recs):
    """A spooled batch as the buffer writes one: each record as its own JSON text."""
    return orjson.dumps({"id": batch_id, "records": [orjson.dumps(r).decode() for r in recs]})


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


class RedisServer:
    """A Redis of this test's own on a fixed port, to stop and start again."""

    def __init__(self, data_dir):
        self.port = embedded_redis.free_port()
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.start()

    def start(self):
        self.process = embedded_redis.start(self.port, self.data_dir, persist=True)

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.process = None

    def client(self):
        return redis_lib.Redis.from_url(self.url)


@pytest.fixture
def server(tmp_path):
    redis_server = RedisServer(tmp_path / "redis")
    yield redis_server
    redis_server.stop()


@pytest.fixture
def own_redis(server):
    return server.url


def run_child(code, *args, env=None, timeout=20):
    """``code`` in a fresh interpreter of this project; returns the finished process."""
    child_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=child_env, timeout=timeout, capture_output=True
    )


def test_batches_spool_while_redis_is_down_and_replay_in_order_after(tmp_path, server):
    async def scenario():
        # No ring: overflow goes straight to the spool, the path a full ring takes.
        buffer = CallLogBuffer(server.url, "calls", tmp_path / "spool", max_batch=10, flush_interval=0.01, ring_bytes=0)
        await buffer.start()
        for r in records(0, 25):
            buffer.append(r)
        await asyncio.sleep(0.3)
        server.stop()
        for r in records(25, 25):
            buffer.append(r)
        await asyncio.sleep(0.3)
        spooled = list((tmp_path / "spool").glob("*.jsonl"))
        server.start()
        for r in records(50, 5):
            buffer.append(r)
        await asyncio.sleep(1.5)
        await buffer.stop()
        return spooled

    spooled = asyncio.run(scenario())
    assert spooled, "nothing was spooled while Redis was down"
    assert stream_ids(server.client(), "calls") == names(0, 55)
    assert not list((tmp_path / "spool").glob("*.jsonl"))


def test_records_wait_in_the_ring_while_redis_is_down_and_ship_in_order_after(tmp_path, server):
    async def scenario():
        buffer = CallLogBuffer(server.url, "calls", tmp_path / "spool", max_batch=10, flush_interval=0.01)
        await buffer.start()
        for r in records(0, 25):
            buffer.append(r)
        await asyncio.sleep(0.3)
        server.stop()
        for r in records(25, 25):
            buffer.append(r)
        await asyncio.sleep(0.3)
        on_disk = sorted(p.name.split("-")[0] for p in (tmp_path / "spool").iterdir())
        server.start()
        await asyncio.sleep(1.2)
        await buffer.stop()
        return on_disk

    assert asyncio.run(scenario()) == ["ring"], "the records wait in the ring file, nowhere else"
    assert stream_ids(server.client(), "calls") == names(0, 50)
    assert not list((tmp_path / "spool").iterdir()), "the drained ring is removed at stop"


def test_stop_flushes_what_is_pending(tmp_path, own_redis):
    async def scenario():
        buffer = CallLogBuffer(own_redis, "calls", tmp_path / "spool", flush_interval=60)
        await buffer.start()
        for r in records(0, 7):
            buffer.append(r)
        await buffer.stop()

    asyncio.run(scenario())
    assert stream_ids(redis_lib.Redis.from_url(own_redis), "calls") == names(0, 7)


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


def test_stop_during_an_in_flight_send_loses_nothing(tmp_path, server):
    client = server.client()

    async def scenario():
        buffer = CallLogBuffer(server.url, "calls", tmp_path / "spool", flush_interval=0.01)
        await buffer.start()
        await asyncio.sleep(0.05)
        client.client_pause(700)  # Redis holds every command for 0.7 s: the next send hangs
        for r in records(0, 20):
            buffer.append(r)
        await asyncio.sleep(0.2)  # the flusher is now waiting on Redis with the batch
        await buffer.stop()

    asyncio.run(scenario())
    assert stream_ids(client, "calls") == names(0, 20)


CRASHING_REPLAY = """
import asyncio, resource, signal, sys
from pathlib import Path
import gateway.metrics  # its files exist before the limit below
from gateway.calllog import CallLogBuffer

async def main():
    buffer = CallLogBuffer(sys.argv[1], "calls", Path(sys.argv[2]), flush_interval=0.01)
    await buffer.start()
    # From now on, writing past 1000 bytes of any file kills this process (SIGXFSZ, which
    # Python ignores by default): the spool rewrite after a failed replay dies half way.
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    await asyncio.sleep(10)

asyncio.run(main())
"""


def test_a_crash_while_rewriting_a_spool_loses_nothing(tmp_path, server):
    spool = tmp_path / "spool"
    spool.mkdir()
    # A dead worker's spool: a torn line (skipped, so the replay rewrites what is left), two batches.
    lines = [b'{"id": "torn", "rec', spool_line("batch-a", records(0, 10)), spool_line("batch-b", records(10, 10))]
    (spool / f"calls-{dead_pid()}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    nowhere = f"redis://127.0.0.1:{embedded_redis.free_port()}/0"  # Redis is away for the replaying worker

    child = run_child(CRASHING_REPLAY, nowhere, spool, env={"PORTICO_VAR_DIR": str(tmp_path / "var")})
    assert child.returncode == -signal.SIGXFSZ, child.stderr.decode()[-2000:]

    async def next_worker():
        buffer = CallLogBuffer(server.url, "calls", spool, flush_interval=0.01)
        await buffer.start()
        await asyncio.sleep(0.5)
        await buffer.stop()

    asyncio.run(next_worker())
    assert stream_ids(server.client(), "calls") == names(0, 20)
    assert not list(spool.glob("*.part")), "the dead worker's half-written file is cleaned up"


def test_a_failed_spool_write_keeps_records_in_memory_and_ships_them_when_redis_returns(tmp_path, server):
    spool = tmp_path / "spool"
    errors_before = metrics.CALLLOG_SPOOL_ERRORS._value.get()

    async def scenario():
        buffer = CallLogBuffer(server.url, "calls", spool, flush_interval=0.01, ring_bytes=0)
        await buffer.start()
        server.stop()
        spool.rename(tmp_path / "spool-elsewhere")
        spool.write_text("a file where the spool directory was: every open() in it fails")
        for r in records(0, 30):
            buffer.append(r)
        await asyncio.sleep(0.7)  # shipping fails, spooling fails
        failed_writes = metrics.CALLLOG_SPOOL_ERRORS._value.get() - errors_before
        spool.unlink()
        spool.mkdir()
        server.start()
        await asyncio.sleep(1.0)
        await buffer.stop()
        return failed_writes

    assert asyncio.run(scenario()) >= 1
    assert stream_ids(server.client(), "calls") == names(0, 30)


def test_a_torn_or_foreign_spool_line_is_quarantined_and_the_rest_shipped(tmp_path, server):
    spool = tmp_path / "spool"
    spool.mkdir()
    foreign_record = orjson.dumps(
        {"id": "mixed", "records": ['{"not": "a call record"}', orjson.dumps(make(5)).decode()]}
    )
    lines = [
        spool_line("batch-a", records(0, 5)),
        b'{"id": "torn", "records": ["{\\"request',  # torn by a crash
        b"42",  # valid JSON, not a batch
        foreign_record,  # a batch with one record that is not a call record
        spool_line("batch-b", records(6, 4)),
    ]
    (spool / f"calls-{dead_pid()}.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    async def scenario():
        buffer = CallLogBuffer(server.url, "calls", spool, flush_interval=0.01)
        await buffer.start()
        await asyncio.sleep(0.5)
        for r in records(10, 5):  # the flusher still runs
            buffer.append(r)
        await asyncio.sleep(0.5)
        await buffer.stop()

    asyncio.run(scenario())
    assert stream_ids(server.client(), "calls") == names(0, 15)
    quarantined = [orjson.loads(line)["line"] for line in (spool / "quarantine.jsonl").read_bytes().splitlines()]
    assert quarantined == [lines[1].decode(), "42", '{"not": "a call record"}']
    assert not list(spool.glob("c*.jsonl")), "the replayed spool is gone"


def test_pending_records_are_bounded_in_memory_dropping_the_oldest_and_counting_them(tmp_path, server):
    spool = tmp_path / "spool"
    dropped_before = metrics.CALLLOG_DROPPED._value.get()

    async def scenario():
        buffer = CallLogBuffer(server.url, "calls", spool, flush_interval=0.01, ring_bytes=0, max_pending=1000)
        await buffer.start()
        server.stop()
        spool.rename(tmp_path / "spool-elsewhere")
        spool.write_text("not a directory")
        for r in records(0, 1500):
            buffer.append(r)
        await asyncio.sleep(0.3)
        spool.unlink()
        spool.mkdir()
        server.start()
        await asyncio.sleep(1.0)
        await buffer.stop()
        return buffer.dropped

    assert asyncio.run(scenario()) == 500
    assert metrics.CALLLOG_DROPPED._value.get() - dropped_before == 500
    assert stream_ids(server.client(), "calls") == names(500, 1000)


KILLED_WORKER = """
import asyncio, os, signal, sys
from pathlib import Path
from gateway.calllog import CallLogBuffer
from gateway.callrecord import CallRecord

def make(i):
    return CallRecord(request_id=f"r{i}", time=1_700_000_000.0 + i, method="GET", path=f"/api/echo/{i}", status=200)

async def main():
    # A small ring, so it wraps around while the first records ship (300 records of ~0.7 kB),
    # yet holds the last 150 whole.
    buffer = CallLogBuffer(sys.argv[1], "calls", Path(sys.argv[2]), flush_interval=0.01, ring_bytes=160 << 10)
    await buffer.start()
    for i in range(300):
        buffer.append(make(i))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert buffer.shipped == 300, buffer.shipped
    for i in range(300, 450):  # never shipped: the process dies first
        buffer.append(make(i))
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_a_ring_left_by_a_killed_process_is_reclaimed_and_shipped_exactly_once(tmp_path, server):
    spool = tmp_path / "spool"
    child = run_child(KILLED_WORKER, server.url, spool, env={"PORTICO_VAR_DIR": str(tmp_path / "var")})
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    client = server.client()
    assert stream_ids(client, "calls") == names(0, 300)
    assert len(list(spool.glob("ring-*.mmap"))) == 1

    async def next_worker():
        buffer = CallLogBuffer(server.url, "calls", spool, flush_interval=0.01)
        await buffer.start()
        await asyncio.sleep(0.5)
        await buffer.stop()

    asyncio.run(next_worker())
    assert stream_ids(client, "calls") == names(0, 450)
    asyncio.run(next_worker())  # a second reclaimer finds nothing left
    assert stream_ids(client, "calls") == names(0, 450)
    assert not list(spool.iterdir())


def test_stop_while_redis_is_away_leaves_every_record_on_disk_for_the_next_worker(tmp_path, server):
    spool = tmp_path / "spool"

    async def worker(n_start, n):
        buffer = CallLogBuffer(server.url, "calls", spool, flush_interval=0.01, ring_bytes=8192)
        await buffer.start()
        for r in records(n_start, n):  # more than the small ring holds: the rest overflows
            buffer.append(r)
        await buffer.stop()

    server.stop()
    asyncio.run(worker(0, 60))
    assert list(spool.glob("ring-*.mmap")) and list(spool.glob("calls-*.jsonl"))
    server.start()
    started = time.monotonic()
    asyncio.run(worker(60, 0))
    assert time.monotonic() - started < 5
    assert sorted(stream_ids(server.client(), "calls"), key=lambda r: int(r[1:])) == names(0, 60)
    assert not list(spool.iterdir())
