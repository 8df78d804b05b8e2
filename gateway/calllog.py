"""The call log's way out of the request path: each worker's records go into a file-backed
memory map (its *ring*), are shipped in batches to a Redis stream, and survive the
worker's death; a sibling or the worker's replacement ships what a dead worker left.

``append`` encodes the record and copies it into the ring: no system call, no await. The
bytes are in the page cache at once, so a worker killed without warning (SIGKILL, the OOM
killer) loses nothing it appended; a machine crash can lose what the kernel had not yet
written back. The flusher ships the range between the ring's *shipped* and *written*
offsets and advances *shipped* only after Redis applied the batch. A batch's id is
deterministic (ring token and offsets), and the Lua script records it (SET NX) before its
XADD, so a batch sent again after an ambiguous failure, by its owner or by whoever
reclaims the ring, is applied once.

Overflow (a full ring while Redis is away) goes to an in-memory list, bounded by
``calllog_max_pending``, and from there to a spool file (``calls-<pid>.jsonl``); if the
spool disk fails too, records stay in memory and the oldest are dropped past the bound,
counted in ``portico_gateway_calllog_dropped_total``. Spools are replayed in order, rewritten
only by temp file + fsync + rename, and an unreadable line goes to ``quarantine.jsonl``.

A stream entry holds one batch: its field ``b`` is a JSON array of records.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import mmap
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.callrecord import CallRecord

log = logging.getLogger(__name__)

SHIP_SCRIPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', 86400) then
  redis.call('XADD', KEYS[2], '*', 'b', ARGV[1])
  return 1
end
return 0
"""

RETRY_WHILE_DOWN_SECONDS = 0.5
RECLAIM_EVERY_SECONDS = 5.0  # how often a worker looks for rings and spools of dead siblings
DEFAULT_RING_BYTES = 32 << 20  # ~85,000 records of ~380 bytes
MAX_BATCH_BYTES = 1 << 20  # one stream entry at most
MAX_RECORD_BYTES = 64 << 10  # larger records (none expected) bypass the ring

# The ring file: a 4 KiB header, then the data area used as a ring of newline-terminated
# JSON records (orjson never writes a raw newline or NUL inside a JSON text). A NUL byte
# marks "the rest of the area is unused, continue at its start". Offsets are logical
# (they only grow); the physical place of offset o is o % capacity.
RING_MAGIC = b"PCLRING1"
HEADER_BYTES = 4096
# Header slots, native 8-byte integers (one aligned store each, never torn by a kill).
_CAPACITY, _PID, _WRITTEN, _SHIPPED, _INFLIGHT, _TOKEN_A, _TOKEN_B = 1, 2, 3, 4, 5, 6, 7
_HEADER_SLOTS = 8

_dumps = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE


def records_of(fields: dict[bytes, bytes]) -> list[Any]:
    """The records of one stream entry, decoded. What cannot be decoded (or is not a batch)
    comes back as it was, for the reader to report."""
    raw = fields.get(b"b")
    if raw is None:
        return [fields]
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [raw]
    return data if isinstance(data, list) else [data]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _valid_record(text: str | bytes) -> bool:
    """One record's JSON text can be read as a CallRecord (the schema the ingester applies)."""
    try:
        data = orjson.loads(text)
        if not isinstance(data, dict):
            return False
        CallRecord.from_dict(data)
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
        return False
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync of the directory. A
    crash or a full disk at any point leaves either the old file or the new one."""
    tmp = path.with_name(f"tmp-{os.getpid()}-{uuid.uuid4().hex}.part")
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _metric(name: str, amount: int = 1) -> None:
    # Imported here: analytics imports this module, and gateway.metrics sets up
    # prometheus's multiprocess directory on import. Only rare events are counted.
    from gateway import metrics

    getattr(metrics, name).inc(amount)


class _Ring:
    """A ring file mapped into memory, locked (flock) for as long as its process lives: the
    kernel drops the lock however the process ends, so a lock that can be taken means a
    dead owner, with no pid-reuse question."""

    def __init__(self, path: Path, fd: int, mm: mmap.mmap) -> None:
        self.path = path
        self.fd = fd
        self.mm = mm
        self.header = memoryview(mm)[: _HEADER_SLOTS * 8].cast("Q")
        self.capacity = int(self.header[_CAPACITY])
        self.token = mm[_TOKEN_A * 8 : _TOKEN_B * 8 + 8].hex()

    @classmethod
    def create(cls, directory: Path, capacity: int) -> _Ring:
        token = os.urandom(16)
        # Made under a name the reclaimers ignore, and locked, before it is a ring.
        tmp = directory / f"tmp-{os.getpid()}-{token[:4].hex()}.part"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Blocks reserved now: writing into a sparse map on a full disk would be SIGBUS.
            os.posix_fallocate(fd, 0, HEADER_BYTES + capacity)
            mm = mmap.mmap(fd, HEADER_BYTES + capacity)
            header = memoryview(mm)[: _HEADER_SLOTS * 8].cast("Q")
            header[_CAPACITY] = capacity
            header[_PID] = os.getpid()
            header[_WRITTEN] = header[_SHIPPED] = header[_INFLIGHT] = 0
            header.release()
            mm[_TOKEN_A * 8 : _TOKEN_B * 8 + 8] = token
            mm[:8] = RING_MAGIC
            path = directory / f"ring-{os.getpid()}-{token[:4].hex()}.mmap"
            os.rename(tmp, path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return cls(path, fd, mm)

    @classmethod
    def claim(cls, path: Path) -> _Ring | None:
        """The ring at ``path`` if its owner is dead and nobody else holds it, else None.
        A file that is not a ring is renamed to ``bad-<name>`` and left for an operator."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its owner lives, or a sibling is reclaiming it
            os.close(fd)
            return None
        stat = os.fstat(fd)
        if stat.st_nlink == 0:  # reclaimed and removed while we waited for it
            os.close(fd)
            return None
        mm: mmap.mmap | None = None
        if stat.st_size > HEADER_BYTES:
            mm = mmap.mmap(fd, stat.st_size)
            capacity = memoryview(mm)[:16].cast("Q")[_CAPACITY]
            if mm[:8] == RING_MAGIC and capacity == stat.st_size - HEADER_BYTES:
                return cls(path, fd, mm)
            mm.close()
        log.error("call log: %s is not a ring; renamed to bad-%s", path, path.name)
        with contextlib.suppress(OSError):
            path.rename(path.with_name(f"bad-{path.name}"))
        os.close(fd)
        return None

    def next_range(self, start: int, written: int) -> tuple[int, bytes | None]:
        """The next batch from ``start``: its end and its newline-terminated records, or
        (end, None) for a stretch with nothing to ship (the unused tail before the wrap).
        Never crosses the end of the data area, never more than MAX_BATCH_BYTES."""
        phys = start % self.capacity
        to_wrap = start + self.capacity - phys
        limit = min(written, to_wrap, start + MAX_BATCH_BYTES)
        chunk = self.mm[HEADER_BYTES + phys : HEADER_BYTES + phys + (limit - start)]
        nul = chunk.find(b"\0")
        if nul == 0:
            return min(to_wrap, written), None
        if nul > 0:
            chunk = chunk[:nul]
        last = chunk.rfind(b"\n")
        if last < 0:  # only in a damaged ring: no whole record here
            return start + len(chunk), chunk
        return start + last + 1, chunk[: last + 1]

    def read(self, start: int, end: int) -> bytes:
        phys = start % self.capacity
        return self.mm[HEADER_BYTES + phys : HEADER_BYTES + phys + (end - start)]

    def close(self, *, remove: bool) -> None:
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.header.release()
        self.mm.close()
        os.close(self.fd)  # releases the lock


class CallLogBuffer:
    def __init__(
        self,
        redis_url: str,
        stream: str,
        spool_dir: Path,
        *,
        max_batch: int = 500,
        flush_interval: float = 0.05,
        max_pending: int | None = None,
        ring_bytes: int = DEFAULT_RING_BYTES,
    ) -> None:
        if max_pending is None:
            from gateway.settings import gateway_settings

            max_pending = gateway_settings().calllog_max_pending
        self._redis_url = redis_url
        self._stream = stream
        self._spool_dir = Path(spool_dir)
        self._max_batch = max_batch
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._ring_bytes = ring_bytes
        self._wake = asyncio.Event()
        self._redis: aioredis.Redis | None = None
        self._sha: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._spool_path = self._spool_dir / f"calls-{os.getpid()}.jsonl"
        self._quarantine_path = self._spool_dir / "quarantine.jsonl"
        self._replay_queue: list[Path] = []  # spool files to ship before anything new, oldest first
        self._retry_at = 0.0
        self._reclaim_at = 0.0
        self._spool_failing = False
        # Overflow: encoded records (newline-terminated) when the ring is full or absent. The
        # first ``_pending_first[1]`` of them were already tried as batch ``_pending_first[0]``.
        self._pending: list[bytes] = []
        self._pending_first: tuple[str, int] | None = None
        # The ring, and the hot path's copies of its state.
        self._ring: _Ring | None = None
        # Without a ring these stand for an empty one, so the hot path needs no None checks.
        self._mm = mmap.mmap(-1, mmap.PAGESIZE)
        self._header = memoryview(self._mm)[: _HEADER_SLOTS * 8].cast("Q")
        self._pos = 0  # where the next record goes, as an index into the map
        self._end = 0  # the end of the data area, as an index into the map
        self._room = -1  # bytes the ring can take before it would overwrite unshipped ones
        self._written = 0
        self._shipped = 0
        self._unshipped = 0  # records appended since the flusher last looked
        self.shipped = 0  # records applied to the stream by this buffer (for metrics and tests)
        self.dropped = 0  # records dropped past max_pending

    # -- the request path ---------------------------------------------------------------

    def append(self, record: CallRecord | dict[str, Any]) -> None:
        data = _dumps(record, option=_NEWLINE)
        size = len(data)
        pos = self._pos
        if size <= self._room and pos + size <= self._end:
            self._mm[pos : pos + size] = data
            self._pos = pos + size
            self._room -= size
            self._written += size
            self._header[_WRITTEN] = self._written  # after the bytes: a kill never leaves half a record
            self._unshipped += 1
            if self._unshipped >= self._max_batch:
                self._wake.set()
            return
        self._append_slow(data)

    def _append_slow(self, data: bytes) -> None:
        size = len(data)
        ring = self._ring
        tail = self._end - self._pos
        if ring is not None and size <= MAX_RECORD_BYTES and tail < size and size + tail <= self._room:
            # Not enough room before the end of the data area: mark the tail unused and wrap.
            if tail:
                self._mm[self._pos] = 0
            self._written += tail
            self._room -= tail
            self._pos = HEADER_BYTES
            self._header[_WRITTEN] = self._written
            self._append_encoded(data)
            return
        self._pending.append(data)
        if len(self._pending) > self._max_pending:
            self._drop_oldest(len(self._pending) - self._max_pending)
        if len(self._pending) >= self._max_batch:
            self._wake.set()

    def _append_encoded(self, data: bytes) -> None:
        size = len(data)
        pos = self._pos
        if size <= self._room and pos + size <= self._end:
            self._mm[pos : pos + size] = data
            self._pos = pos + size
            self._room -= size
            self._written += size
            self._header[_WRITTEN] = self._written
            self._unshipped += 1
            return
        self._append_slow(data)

    def _drop_oldest(self, count: int) -> None:
        del self._pending[:count]
        self._pending_first = None  # the batch being tried lost records: it gets a new id
        self.dropped += count
        _metric("CALLLOG_DROPPED", count)
        log.error(
            "call log: %d records dropped (oldest first): Redis and the spool are failing and %d are held in memory",
            count,
            self._max_pending,
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        self._redis = aioredis.Redis.from_url(
            self._redis_url, socket_timeout=2, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        self._replay_queue += await asyncio.to_thread(self._reclaim_orphans, True)
        self._reclaim_at = asyncio.get_running_loop().time() + RECLAIM_EVERY_SECONDS
        if self._ring_bytes > 0:
            try:
                self._open_ring(_Ring.create(self._spool_dir, self._ring_bytes))
            except OSError as error:
                log.error(
                    "call log: no ring in %s (%s); records are held in memory until shipped", self._spool_dir, error
                )
        self._task = asyncio.create_task(self._run(), name="call-log-flusher")

    def _open_ring(self, ring: _Ring) -> None:
        self._ring = ring
        self._mm = ring.mm
        self._header = ring.header
        self._end = HEADER_BYTES + ring.capacity
        self._pos = HEADER_BYTES
        self._room = ring.capacity
        self._written = self._shipped = 0

    async def stop(self) -> None:
        """Ship everything; what Redis does not take stays on disk: the ring (left in place
        for the next worker to reclaim) and the spool."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._retry_at = 0.0
        drained = False
        try:
            drained = await self._flush_all()
        except Exception:
            log.exception("call log: final flush failed")
        if not drained:
            self._spool_pending()
            if self._pending:
                log.error("call log: %d records could be neither shipped nor spooled at shutdown", len(self._pending))
        ring = self._ring
        if ring is not None:
            self._ring, self._room, self._end = None, -1, 0
            self._mm = mmap.mmap(-1, mmap.PAGESIZE)
            self._header = memoryview(self._mm)[: _HEADER_SLOTS * 8].cast("Q")
            ring.close(remove=self._shipped == self._written)
        if self._redis is not None:
            await self._redis.aclose()

    def backlog(self) -> dict[str, int]:
        """Bytes of call records not yet in the stream, read from the files in the spool
        directory, so that whichever worker answers a scrape reports every worker's: each
        ring's written but unshipped bytes (its header, which the owner updates in place), and
        the size of the spool files waiting for replay. Runs in a thread (file reads)."""
        ring = spool = 0
        for path in self._spool_dir.glob("ring-*.mmap"):
            try:
                with open(path, "rb") as file:
                    header = file.read(_HEADER_SLOTS * 8)
            except OSError:  # reclaimed and removed meanwhile
                continue
            if len(header) < _HEADER_SLOTS * 8 or header[:8] != RING_MAGIC:
                continue
            slots = memoryview(header).cast("Q")
            ring += max(0, int(slots[_WRITTEN]) - int(slots[_SHIPPED]))
        for pattern in ("calls-*.jsonl", "claimed-*.jsonl"):
            for path in self._spool_dir.glob(pattern):
                with contextlib.suppress(OSError):
                    spool += path.stat().st_size
        return {"ring": ring, "spool": spool}

    # -- shipping -----------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            self._wake.clear()
            if loop.time() < self._retry_at:
                continue
            try:
                if loop.time() >= self._reclaim_at:
                    self._reclaim_at = loop.time() + RECLAIM_EVERY_SECONDS
                    self._replay_queue += await asyncio.to_thread(self._reclaim_orphans, False)
                if not await self._flush_all():
                    self._spool_pending()
            except Exception:  # the flusher must survive anything; records stay where they are
                log.exception("call log flusher error")
                self._retry_at = loop.time() + RETRY_WHILE_DOWN_SECONDS

    async def _flush_all(self) -> bool:
        """Ship spooled batches, then the ring, then the overflow. False when Redis failed."""
        if (self._replay_queue or self._spool_path.exists()) and not await self._replay_spools():
            return False
        if self._ring is not None and not await self._ship_ring():
            return False
        while self._pending:
            if not await self._ship_pending_batch():
                return False
        return True

    async def _ship_ring(self) -> bool:
        ring = self._ring
        assert ring is not None
        self._unshipped = 0
        # Only what was written before this flush: records appended while a batch is in
        # flight wait for the next wake (a full batch, or the interval). Chasing them made
        # one small XADD per Redis round trip under load, which cost more than the records.
        goal = self._written
        while self._shipped < goal:
            start = self._shipped
            inflight = int(ring.header[_INFLIGHT])
            data: bytes | None
            if inflight > start:  # tried before, maybe applied: the same range, the same id
                end, data = inflight, ring.read(start, inflight)
            else:
                end, data = ring.next_range(start, goal)
            if data:
                ring.header[_INFLIGHT] = end
                payload = b"[" + data[:-1].replace(b"\n", b",") + b"]"
                if not await self._ship(f"{ring.token}:{start}:{end}", payload, data.count(b"\n")):
                    return False
            if self._ring is not ring:  # stopped meanwhile
                return True
            ring.header[_SHIPPED] = end
            self._shipped = end
            self._room += end - start
        return True

    async def _ship_pending_batch(self) -> bool:
        if self._pending_first is None:
            self._pending_first = (uuid.uuid4().hex, min(len(self._pending), self._max_batch))
        batch_id, count = self._pending_first
        batch = self._pending[:count]
        payload = b"[" + b",".join(record[:-1] for record in batch) + b"]"
        if not await self._ship(batch_id, payload, count):
            return False
        if self._pending_first == (batch_id, count):
            del self._pending[:count]
            self._pending_first = None
        return True

    async def _ship(self, batch_id: str, payload: bytes, count: int) -> bool:
        """One stream entry holding ``payload``, a JSON array of ``count`` records."""
        if self._redis is None:
            return False
        keys = [f"portico:calls:batch:{batch_id}", self._stream]
        try:
            if self._sha is None:
                self._sha = await self._redis.script_load(SHIP_SCRIPT)
            try:
                await self._redis.evalsha(self._sha, 2, *keys, payload)
            except NoScriptError:
                self._sha = await self._redis.script_load(SHIP_SCRIPT)
                await self._redis.evalsha(self._sha, 2, *keys, payload)
        except (RedisError, OSError) as error:
            log.warning("call log: Redis unreachable (%s); records wait in the ring and spool", error)
            self._retry_at = asyncio.get_running_loop().time() + RETRY_WHILE_DOWN_SECONDS
            return False
        self.shipped += count
        return True

    # -- the spool ----------------------------------------------------------------------

    def _spool_pending(self) -> None:
        """Move the overflow to the spool file. On a failed write the records stay in memory
        (bounded by max_pending) and the write is tried again at the next flush."""
        while self._pending:
            if self._pending_first is None:
                self._pending_first = (uuid.uuid4().hex, min(len(self._pending), self._max_batch))
            batch_id, count = self._pending_first
            records = [record[:-1].decode() for record in self._pending[:count]]
            line = orjson.dumps({"id": batch_id, "records": records}) + b"\n"
            try:
                with open(self._spool_path, "ab") as spool:
                    spool.write(line)
            except OSError as error:
                _metric("CALLLOG_SPOOL_ERRORS")
                if not self._spool_failing:
                    log.error(
                        "call log: cannot spool to %s (%s); %d records held in memory",
                        self._spool_path,
                        error,
                        len(self._pending),
                    )
                self._spool_failing = True
                return
            if self._spool_failing:
                log.warning("call log: spooling to %s works again", self._spool_path)
                self._spool_failing = False
            del self._pending[:count]
            self._pending_first = None

    def _quarantine(self, what: bytes | str, source: Path) -> None:
        text = what.decode("utf-8", "replace") if isinstance(what, bytes) else what
        line = orjson.dumps({"time": time.time(), "from": source.name, "line": text}) + b"\n"
        try:
            with open(self._quarantine_path, "ab") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
        except OSError as error:
            log.error("call log: cannot quarantine an unreadable line from %s (%s): %r", source, error, text[:200])
        else:
            log.error("call log: an unreadable line from %s moved to %s", source, self._quarantine_path)
        _metric("CALLLOG_QUARANTINED")

    def _parse_spool_line(self, line: bytes, source: Path) -> tuple[str, list[str]] | None:
        """A spooled batch's id and its readable records; what is unreadable is quarantined."""
        try:
            batch = orjson.loads(line)
        except orjson.JSONDecodeError:
            batch = None
        if (
            not isinstance(batch, dict)
            or not isinstance(batch.get("id"), str)
            or not isinstance(batch.get("records"), list)
        ):
            self._quarantine(line, source)
            return None
        good = []
        for text in batch["records"]:
            if isinstance(text, str) and _valid_record(text):
                good.append(text)
            else:
                self._quarantine(text if isinstance(text, str) else orjson.dumps(text), source)
        return batch["id"], good

    def _reclaim_orphans(self, starting: bool) -> list[Path]:
        """Take over the rings and spools of workers that died; returns spool files to replay.
        Runs in a thread: it reads and writes files. Spools named with this process's pid are
        a previous process's (pid reuse) only when this one is ``starting``."""
        claimed: list[Path] = []
        for path in sorted(self._spool_dir.glob("tmp-*.part")):  # half-made files of dead workers
            with contextlib.suppress(ValueError, OSError):
                if not _pid_alive(int(path.name.split("-")[1])):
                    path.unlink()
        for path in sorted(self._spool_dir.glob("ring-*.mmap")):
            if self._ring is not None and path == self._ring.path:
                continue
            try:
                ring = _Ring.claim(path)
                if ring is not None:
                    claimed += self._spool_ring(ring)
            except (OSError, ValueError):
                log.exception("call log: cannot reclaim %s", path)
        for pattern in ("calls-*.jsonl", "claimed-*.jsonl"):
            for path in sorted(self._spool_dir.glob(pattern)):
                try:
                    pid = int(path.stem.split("-")[1])
                except (ValueError, IndexError):
                    continue
                if (starting and pid == os.getpid()) or (pid != os.getpid() and not _pid_alive(pid)):
                    target = self._spool_dir / f"claimed-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
                    with contextlib.suppress(FileNotFoundError):  # another worker claimed it first
                        path.rename(target)
                        claimed.append(target)
        return claimed

    def _spool_ring(self, ring: _Ring) -> list[Path]:
        """A dead worker's ring, as a spool file of validated batches with deterministic ids
        (the ones its owner would have used), then removed."""
        lines: list[bytes] = []
        recovered = 0
        start, written = int(ring.header[_SHIPPED]), int(ring.header[_WRITTEN])
        inflight = int(ring.header[_INFLIGHT])
        if not start <= written <= start + ring.capacity:  # a damaged header
            log.error(
                "call log: ring %s has impossible offsets (%d, %d); renamed to bad-%s",
                ring.path,
                start,
                written,
                ring.path.name,
            )
            with contextlib.suppress(OSError):
                ring.path.rename(ring.path.with_name(f"bad-{ring.path.name}"))
            ring.close(remove=False)
            return []
        data: bytes | None
        while start < written:
            if start < inflight <= written and inflight - start <= MAX_BATCH_BYTES:
                end, data = inflight, ring.read(start, inflight)
            else:
                end, data = ring.next_range(start, written)
            if data:
                records = []
                for text in data.split(b"\n"):
                    if text and _valid_record(text):
                        records.append(text.decode())
                    elif text:
                        self._quarantine(text, ring.path)
                if records:
                    lines.append(orjson.dumps({"id": f"{ring.token}:{start}:{end}", "records": records}))
                    recovered += len(records)
            start = end
        claimed: list[Path] = []
        if lines:
            target = self._spool_dir / f"claimed-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
            _write_atomically(target, b"\n".join(lines) + b"\n")
            claimed.append(target)
            _metric("CALLLOG_RECLAIMED", recovered)
            log.warning("call log: %d records recovered from %s, left by a worker that died", recovered, ring.path.name)
        ring.close(remove=True)
        return claimed

    async def _replay_spools(self) -> bool:
        """Ship spooled batches in order. True when every spool is empty again."""
        if self._spool_path.exists():
            claimed = self._spool_dir / f"claimed-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
            self._spool_path.rename(claimed)
            self._replay_queue.append(claimed)
        while self._replay_queue:
            path = self._replay_queue[0]
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:
                self._replay_queue.pop(0)
                continue
            for done, line in enumerate(lines):
                if not line.strip():
                    continue
                batch = self._parse_spool_line(line, path)
                if batch is None or not batch[1]:
                    continue
                batch_id, records = batch
                if not await self._ship(batch_id, ("[" + ",".join(records) + "]").encode(), len(records)):
                    if done:
                        try:
                            _write_atomically(path, b"\n".join(lines[done:]) + b"\n")
                        except OSError as error:  # the old file stays: shipped lines replay as duplicates SET NX drops
                            log.error("call log: cannot rewrite %s (%s)", path, error)
                    return False
            path.unlink()
            self._replay_queue.pop(0)
        return True
