"""Ingest benchmark: call records per second from the gateway's Redis stream into CallLog,
on SQLite and on PostgreSQL, today's method against the previous one in the same run.

``python -m bench.ingest`` (see bench/README.md). For each database (a throwaway SQLite file;
a throwaway PostgreSQL cluster with its default, durable settings, when PostgreSQL is
installed) and its own throwaway Redis:

1. **Capacity**: the stream is filled with realistic records (gateway-shaped entries of 500
   records: mixed statuses, APIs, tenants, keys, some AI calls with tokens and cost) before an
   ingester starts; the time it takes to drain it gives records/s. Once with ``before``
   (Django ``bulk_create``, 500 rows a statement: the ingest as it was) and once per batch
   size with ``after`` (``analytics.ingest``, the real code).
2. **Sustained**: a producer process writes records at a fixed rate (a share of the measured
   capacity, 80 % by default) while ``after`` ingests; the backlog (records in the stream,
   read or not, not yet acknowledged) is sampled every half second. Flat means it ends
   about where it began and never grows run-long.

Each ingester is a subprocess with DATABASE_URL pointing at the database under test, so it
runs exactly as a worker would. Results go to ``var/bench/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from portal import embedded_redis

ROOT = Path(__file__).resolve().parent.parent
STREAM = "portico:calls"
PER_ENTRY = 500  # records per stream entry, as the gateway's flusher batches them (max_batch)


# -- realistic records ----------------------------------------------------------------------


def _templates(count: int = PER_ENTRY) -> list[bytes]:
    """One entry's records as JSON with two holes each: the request id's counter and the time."""
    out = []
    for n in range(count):
        status = (200, 200, 200, 200, 201, 204, 304, 400, 401, 404, 429, 500, 502, 503)[n % 14]
        record: dict[str, Any] = {
            "request_id": "@ID@",
            "time": "@T@",
            "method": ("GET", "GET", "POST", "PUT", "DELETE")[n % 5],
            "path": f"/api{n % 9}/v1/items/{n * 7919 % 10_000}",
            "client_ip": f"10.{n % 4}.{n % 250}.{n * 7 % 250}",
            "client_request_id": f"client-{n}" if n % 10 == 0 else None,
            "api_id": n % 9 + 1,
            "version_id": (n % 9 + 1) * 10 + n % 2,
            "tenant_id": n % 25 + 1,
            "application_id": n % 60 + 1,
            "key_prefix": f"pk_{n % 60:08d}",
            "status": status,
            "latency_ms": round(2.0 + (n * 37 % 400) / 3.0, 3),
            "upstream_latency_ms": round(1.0 + (n * 37 % 400) / 3.5, 3),
            "bytes_in": 0 if n % 5 < 2 else 240 + n % 900,
            "bytes_out": 120 + n * 13 % 8000,
            "cache_hit": n % 11 == 0,
            "error_code": {429: "rate_limited", 401: "unauthorized", 404: "not_found"}.get(status, ""),
        }
        if n % 8 == 0:  # an AI call
            record |= {
                "model": "gpt-4o-mini",
                "provider": "openai",
                "upstream_model": "gpt-4o-mini-2024-07-18",
                "tokens_in": 200 + n,
                "tokens_out": 50 + n % 300,
                "tokens_cached": 0,
                "tokens_estimated": False,
                "cost": f"{(200 + n) * 0.00000015 + (50 + n % 300) * 0.0000006:.8f}",
                "ttft_ms": 120.5,
                "overhead_ms": 0.8,
                "pii_masked": n % 3,
                "fallbacks": 0,
            }
        text = orjson.dumps(record).replace(b'"@ID@"', b'"@PREFIX@%016x"').replace(b'"@T@"', b"%.6f")
        out.append(text)
    return out


class Records:
    """Entries of PER_ENTRY gateway-shaped records, unique request ids, cheap to make."""

    def __init__(self, prefix: str) -> None:
        self.template = b"[" + b",".join(_templates()) + b"]"
        self.template = self.template.replace(b"@PREFIX@", prefix.encode())
        self.counter = 0

    def entry(self, now: float) -> bytes:
        values: list[Any] = []
        for n in range(PER_ENTRY):
            values += [self.counter + n, now + n * 1e-5]
        self.counter += PER_ENTRY
        return self.template % tuple(values)


def fill(client: redis.Redis, records: int, prefix: str) -> None:
    source = Records(prefix)
    pipe = client.pipeline(transaction=False)
    for n in range(records // PER_ENTRY):
        pipe.xadd(STREAM, {"b": source.entry(time.time())})
        if n % 50 == 49:
            pipe.execute()
    pipe.execute()


def backlog(client: redis.Redis) -> int:
    """Records in the stream not yet acknowledged and deleted (read or not), in records."""
    return int(client.xlen(STREAM)) * PER_ENTRY


# -- the ingesters (run as subprocesses: python -m bench.ingest _consume ...) --------------


def legacy_ingest(client: redis.Redis, batch_size: int) -> int:
    """The ingest as it was before this benchmark (Django bulk_create, 500 rows a statement):
    the reference. Same stream handling, its own record checks and insert."""
    from datetime import UTC, datetime

    from django.db import transaction
    from django.db.models import CharField, Q

    from analytics.ingest import GROUP, _consumer_name, _ensure_group
    from analytics.models import CallLog
    from gateway.calllog import records_of
    from gateway.callrecord import AiCallRecord
    from portal.models import ApiKey

    types = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool, int), "None": (type(None),)}
    columns = {f.name: f for f in CallLog._meta.get_fields() if f.name != "id"}
    checks = {
        name: (
            tuple(t for part in str(field.type).split("|") for t in types[part.strip()]),
            isinstance(columns[name], CharField) and not columns[name].null,
        )
        for field in AiCallRecord.__dataclass_fields__.values()
        if (name := field.name) in columns
    }

    def to_row(data: Any) -> CallLog | None:
        record = AiCallRecord.from_dict(data)
        values = {}
        for name, (allowed, text) in checks.items():
            value = getattr(record, name)
            if text and value is None:
                value = ""
            if not isinstance(value, allowed):
                return None
            values[name] = value
        values["time"] = datetime.fromtimestamp(record.time, tz=UTC)
        values["cache_hit"] = bool(record.cache_hit)
        return CallLog(**values)

    consumer = _consumer_name()
    _ensure_group(client, STREAM)
    stored = 0
    while True:
        answer = client.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=batch_size, block=500)
        if not answer:
            return stored
        entries = answer[0][1]
        rows = [row for _id, fields in entries for r in records_of(fields) if (row := to_row(r)) is not None]
        with transaction.atomic():
            CallLog.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
            last_used: dict[str, datetime] = {}
            for row in rows:
                if row.key_prefix and (row.key_prefix not in last_used or row.time > last_used[row.key_prefix]):
                    last_used[row.key_prefix] = row.time
            for prefix, when in last_used.items():
                ApiKey.objects.filter(Q(last_used_at__lt=when) | Q(last_used_at__isnull=True), prefix=prefix).update(
                    last_used_at=when
                )
        stored += len(rows)
        ids = [entry_id for entry_id, _fields in entries]
        client.xack(STREAM, GROUP, *ids)
        client.xdel(STREAM, *ids)


def consume(method: str, batch_size: int, until_idle_s: float) -> None:
    """Ingest until the stream has given nothing for ``until_idle_s``; print records and seconds
    (from the first record read to the last stored) as JSON."""
    import django

    django.setup()
    from analytics.ingest import ingest_call_logs

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    stored, started, finished, idle_since = 0, None, None, time.monotonic()
    while time.monotonic() - idle_since < until_idle_s:
        begin = time.monotonic()
        if method == "before":
            got = legacy_ingest(client, batch_size)
        else:
            got = ingest_call_logs(client=client, batch_size=batch_size, block_ms=500, max_batches=20)
        if got:
            started = started or begin
            finished = time.monotonic()
            stored += got
            idle_since = finished
    print(json.dumps({"records": stored, "seconds": (finished - started) if started and finished else 0.0}))


# -- one database under test --------------------------------------------------------------


class Target:
    """A database (and its own Redis) for one run, with the environment for subprocesses."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir / kind
        self.workdir.mkdir(parents=True)
        self.redis_port = embedded_redis.free_port()
        self.redis = embedded_redis.start(self.redis_port, self.workdir / "redis")
        self.client = redis.Redis.from_url(self.redis_url)
        self.postgres = None
        if kind == "postgresql":
            from tests.plugins import postgres_server

            # PostgreSQL's own defaults (fsync, synchronous_commit, full_page_writes on): production-like.
            self.postgres = postgres_server.start(directory=Path(tempfile.mkdtemp(prefix="portico-bench-pg-")))
            import psycopg

            with psycopg.connect(self.postgres.url().replace("postgres://", "postgresql://"), autocommit=True) as c:
                c.execute("CREATE DATABASE bench")
            self.database_url = self.postgres.url("bench", socket=True)
        else:
            self.database_url = f"sqlite:///{self.workdir / 'bench.sqlite3'}"
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=self.env, check=True)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "PORTICO_VAR_DIR": str(self.workdir / "var"),
            "LOG_LEVEL": "WARNING",
        }

    def reset(self) -> None:
        """An empty table and stream: each measurement starts from the same place."""
        self.client.delete(STREAM)
        code = "import django; django.setup(); from analytics.models import CallLog; CallLog.objects.all().delete()"
        if self.kind == "postgresql":
            code = (
                "import django; django.setup(); from django.db import connection; "
                "connection.cursor().execute('TRUNCATE analytics_calllog'); "
                "connection.cursor().execute('VACUUM ANALYZE analytics_calllog')"
            )
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=self.env, check=True)

    def ingester(self, method: str, batch_size: int, until_idle_s: float = 1.5) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.ingest", "_consume", method, str(batch_size), str(until_idle_s)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> None:
        self.client.close()
        self.redis.terminate()
        self.redis.wait(timeout=10)
        if self.postgres is not None:
            self.postgres.stop()


def capacity(target: Target, method: str, batch_size: int, records: int) -> dict[str, Any]:
    target.reset()
    fill(target.client, records, os.urandom(8).hex())
    process = target.ingester(method, batch_size)
    out, _ = process.communicate(timeout=600)
    result = json.loads(out.strip().splitlines()[-1])
    rate = result["records"] / result["seconds"] if result["seconds"] else 0.0
    left = backlog(target.client)
    print(f"  {target.kind:10} {method:6} {batch_size:4} entries/read  {result['records']:>9,} records  "
          f"{rate:>10,.0f} records/s" + (f"  ({left} left!)" if left else ""), flush=True)  # fmt: skip
    return {"method": method, "entries_per_read": batch_size, **result, "records_per_second": rate, "left": left}


def produce(redis_url: str, rate: float, seconds: float) -> None:
    """Write entries of PER_ENTRY records at ``rate`` records/s for ``seconds`` (a subprocess)."""
    client = redis.Redis.from_url(redis_url)
    source = Records(os.urandom(8).hex())
    interval = PER_ENTRY / rate
    start = time.monotonic()
    n = 0
    while (due := start + n * interval) < start + seconds:
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        client.xadd(STREAM, {"b": source.entry(time.time())})
        n += 1
    print(json.dumps({"records": n * PER_ENTRY, "late_s": max(0.0, time.monotonic() - start - seconds)}))


def sustained(target: Target, batch_size: int, rate: float, seconds: float) -> dict[str, Any]:
    target.reset()
    consumer = target.ingester("after", batch_size, until_idle_s=3.0)
    time.sleep(2.0)  # the ingester is up (Django loaded) before the first record
    producer = subprocess.Popen(
        [sys.executable, "-m", "bench.ingest", "_produce", target.redis_url, str(rate), str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    samples = []
    start = time.monotonic()
    while producer.poll() is None:
        time.sleep(0.5)
        samples.append((round(time.monotonic() - start, 1), backlog(target.client)))
    produced = json.loads(producer.communicate()[0].strip().splitlines()[-1])
    drain_start = time.monotonic()
    while backlog(target.client) and time.monotonic() - drain_start < 60:
        time.sleep(0.1)
    drain = time.monotonic() - drain_start
    out, _ = consumer.communicate(timeout=600)
    result = json.loads(out.strip().splitlines()[-1])
    third = max(1, len(samples) // 3)
    first, last = [b for _t, b in samples[:third]], [b for _t, b in samples[-third:]]
    # Flat: the last third's backlog is no higher than the first third's plus two entries per
    # ingester read (what one read in flight holds), and the end drains within a second.
    slack = 2 * batch_size * PER_ENTRY
    flat = statistics.mean(last) <= statistics.mean(first) + slack and drain < 1.0
    print(f"  {target.kind:10} sustained {rate:,.0f} records/s for {seconds:.0f} s: produced {produced['records']:,}, "
          f"stored {result['records']:,}, backlog max {max(b for _t, b in samples):,}, end {samples[-1][1]:,}, "
          f"drained in {drain:.1f} s: {'FLAT' if flat else 'GROWING'}", flush=True)  # fmt: skip
    return {
        "rate": rate,
        "seconds": seconds,
        "produced": produced["records"],
        "producer_late_s": produced["late_s"],
        "stored": result["records"],
        "backlog": samples,
        "drain_seconds": drain,
        "flat": flat,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_consume":
        consume(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_produce":
        produce(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--records", type=int, default=200_000, help="records per capacity run of the new ingest")
    parser.add_argument("--before-records", type=int, default=50_000, help="records per run of the old ingest")
    parser.add_argument("--batch-sizes", default="10,20,40,100", help="entries per read to try (each 500 records)")
    parser.add_argument("--sustained-share", type=float, default=0.8, help="sustained rate over capacity")
    parser.add_argument("--sustained-seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "ingest.json")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from analytics.ingest import ENTRIES_PER_READ

    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "databases": {}}
    workdir = Path(tempfile.mkdtemp(prefix="portico-bench-ingest-"))
    ok = False
    try:
        for kind in [k.strip() for k in args.databases.split(",") if k.strip()]:
            if kind == "postgresql":
                from tests.plugins import postgres_server

                if reason := postgres_server.unavailable_reason():
                    print(f"  postgresql skipped: {reason}")
                    continue
            print(f"{kind}:", flush=True)
            target = Target(kind, workdir)
            try:
                default_batch = ENTRIES_PER_READ[kind]
                before = capacity(target, "before", 50, args.before_records)
                after = [
                    capacity(target, "after", int(size), args.records) for size in args.batch_sizes.split(",") if size
                ]
                chosen = next((a for a in after if a["entries_per_read"] == default_batch), after[-1])
                steady = sustained(
                    target,
                    chosen["entries_per_read"],
                    chosen["records_per_second"] * args.sustained_share,
                    args.sustained_seconds,
                )
                speedup = chosen["records_per_second"] / before["records_per_second"]
                print(f"  {kind:10} after/before: {speedup:.1f}x", flush=True)
                results["databases"][kind] = {
                    "before": before,
                    "after": after,
                    "default_entries_per_read": default_batch,
                    "after_over_before": speedup,
                    "sustained": steady,
                }
            finally:
                target.stop()
        ok = True
    finally:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"failed; files kept in {workdir}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    if "postgresql" in results["databases"]:
        rate = next(
            a["records_per_second"]
            for a in results["databases"]["postgresql"]["after"]
            if a["entries_per_read"] == results["databases"]["postgresql"]["default_entries_per_read"]
        )
        print(f"PostgreSQL: {rate:,.0f} records/s against a target of 100,000: {'PASS' if rate >= 100_000 else 'FAIL'}")
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
