"""The call log's way out of the request path: an in-memory buffer, shipped in batches to a
Redis stream, spooled to a local file while Redis is unreachable and replayed after.

``append`` is a list append: logging never blocks or fails a request. Each batch carries
an id and is applied by a Lua script that records the id (SET NX) before its XADD, so a
batch replayed after an ambiguous failure (sent, but the answer lost) is not duplicated.

A batch is one stream entry whose field ``b`` holds a JSON array of records: one XADD per
batch rather than per call cut Redis's share of the gateway's traffic several times over.
Older entries hold one record each in field ``r``; ``records_of`` reads both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from pathlib import Path

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

log = logging.getLogger(__name__)

SHIP_SCRIPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', 86400) then
  redis.call('XADD', KEYS[2], '*', 'b', ARGV[1])
  return 1
end
return 0
"""


def records_of(fields: dict) -> list:
    """The records of one stream entry, whichever shape it has, decoded. What cannot be
    decoded comes back as it was, for the reader to report."""
    raw = fields.get(b"b")
    single = raw is None
    if single:
        raw = fields.get(b"r", b"{}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [raw]
    return data if not single and isinstance(data, list) else [data]


RETRY_WHILE_DOWN_SECONDS = 0.5


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CallLogBuffer:
    def __init__(
        self,
        redis_url: str,
        stream: str,
        spool_dir: Path,
        *,
        max_batch: int = 500,
        flush_interval: float = 0.05,
    ):
        self._redis_url = redis_url
        self._stream = stream
        self._spool_dir = Path(spool_dir)
        self._max_batch = max_batch
        self._flush_interval = flush_interval
        self._pending: list[dict] = []
        self._wake = asyncio.Event()
        self._redis: aioredis.Redis | None = None
        self._sha: str | None = None
        self._task: asyncio.Task | None = None
        self._spool_path = self._spool_dir / f"calls-{os.getpid()}.jsonl"
        self._replay_queue: list[Path] = []  # spool files to ship before anything new, oldest first
        self._retry_at = 0.0
        self.shipped = 0  # records applied to the stream by this buffer (for metrics and tests)

    # -- the request path ---------------------------------------------------------------

    def append(self, record: dict) -> None:
        self._pending.append(record)
        if len(self._pending) >= self._max_batch:
            self._wake.set()

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        self._redis = aioredis.Redis.from_url(
            self._redis_url, socket_timeout=2, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        self._claim_orphaned_spools()
        self._task = asyncio.create_task(self._run(), name="call-log-flusher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._retry_at = 0.0
        while self._pending:
            await self._flush_once()
        if self._redis is not None:
            await self._redis.aclose()

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
                while True:
                    await self._flush_once()
                    if len(self._pending) < self._max_batch:
                        break
            except Exception:  # the flusher must survive anything; records stay pending or spooled
                log.exception("call log flusher error")

    async def _flush_once(self) -> None:
        if (self._replay_queue or self._spool_path.exists()) and not await self._replay_spools():
            self._spool_pending()
            return
        if not self._pending:
            return
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        batch_id = uuid.uuid4().hex
        # One encoder call for the whole batch; records are encoded one by one only to spool.
        if not await self._ship(batch_id, orjson.dumps(batch), len(batch)):
            self._write_spool(self._spool_path, batch_id, batch)

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
            log.warning("call log: Redis unreachable (%s); spooling to %s", error, self._spool_dir)
            self._retry_at = asyncio.get_running_loop().time() + RETRY_WHILE_DOWN_SECONDS
            return False
        self.shipped += count
        return True

    # -- the spool ----------------------------------------------------------------------

    def _spool_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            self._write_spool(self._spool_path, uuid.uuid4().hex, batch)

    @staticmethod
    def _write_spool(path: Path, batch_id: str, records: list[dict]) -> None:
        # Each record is kept as its own JSON text, the spool's format since it began.
        line = orjson.dumps({"id": batch_id, "records": [orjson.dumps(r).decode() for r in records]})
        with open(path, "ab") as spool:
            spool.write(line + b"\n")

    def _claim_orphaned_spools(self) -> None:
        """Take over spools of workers that died, so their records are replayed too."""
        for path in sorted(self._spool_dir.glob("calls-*.jsonl")):
            try:
                pid = int(path.stem.split("-", 1)[1])
            except ValueError:
                continue
            if pid == os.getpid() or not _pid_alive(pid):
                claimed = self._spool_dir / f"claimed-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
                with contextlib.suppress(FileNotFoundError):  # another worker claimed it first
                    path.rename(claimed)
                    self._replay_queue.append(claimed)
        for path in sorted(self._spool_dir.glob("claimed-*.jsonl")):
            pid = int(path.stem.split("-")[1])
            if path not in self._replay_queue and not _pid_alive(pid):
                claimed = self._spool_dir / f"claimed-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
                with contextlib.suppress(FileNotFoundError):
                    path.rename(claimed)
                    self._replay_queue.append(claimed)

    async def _replay_spools(self) -> bool:
        """Ship spooled batches in order. True when every spool is empty again."""
        if self._spool_path.exists():
            claimed = self._spool_dir / f"claimed-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
            self._spool_path.rename(claimed)
            self._replay_queue.append(claimed)
        while self._replay_queue:
            path = self._replay_queue[0]
            lines = path.read_bytes().splitlines()
            for done, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    batch = orjson.loads(line)
                except orjson.JSONDecodeError:  # a torn last line from a crash: nothing to ship
                    log.error("call log: unreadable spool line in %s skipped", path)
                    continue
                records = batch["records"]
                if not await self._ship(batch["id"], ("[" + ",".join(records) + "]").encode(), len(records)):
                    path.write_bytes(b"\n".join(lines[done:]) + b"\n")
                    return False
            path.unlink()
            self._replay_queue.pop(0)
        return True
