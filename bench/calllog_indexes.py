"""Do CallLog's single-column indexes on ``api_id`` and ``tenant_id`` pay for what they cost
the ingest, on PostgreSQL?

``python -m bench.calllog_indexes [--records 100000] [--rounds 3] [--table-rows 1000000]``
(about 5 minutes; PostgreSQL's binaries needed; nothing left running). On a throwaway cluster
with PostgreSQL's default, durable settings (``bench.ingest.Target``):

1. **Ingest**: the ingest capacity (``bench.ingest.capacity``: a filled stream drained by one
   real ingester subprocess) with the table's indexes as migrated (*with*) and without the two
   single-column indexes (*without*), alternated ``--rounds`` times (with, without, with, ...)
   so both see the same load from the rest of the machine; read the ratio of the medians.
2. **Plans**: the table filled with ``--table-rows`` calls over 14 days (SQL ``generate_series``:
   25 tenants, 8 common APIs and a rare one at 0.5 %, mixed statuses), ANALYZEd, then the log
   explorer's, the call page's and the trend report's queries, built by the real code
   (``analytics.explorer``, ``analytics.reports.top_errors``) in a Django subprocess, run under
   ``EXPLAIN (ANALYZE, BUFFERS)`` with and without the two indexes: which indexes each plan uses
   and its execution time. (The dashboards read only the rollups: a test checks it.)

Results in ``var/bench/calllog_indexes.json``; figures in bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TABLE = "analytics_calllog"
RARE_API = 9

# name -> (scope: tenant id or None for staff, query parameters of the explorer)
EXPLORER_QUERIES: dict[str, tuple[int | None, dict[str, str]]] = {
    "tenant, last day, page 1": (7, {"range": "day"}),
    "tenant, last day, one API": (7, {"range": "day", "api": "3"}),
    "tenant, last week, 5xx": (7, {"range": "week", "status": "5xx"}),
    "staff, last day, page 1": (None, {"range": "day"}),
    "staff, last day, one API": (None, {"range": "day", "api": "3"}),
    "staff, last week, the rare API": (None, {"range": "week", "api": str(RARE_API)}),
    "staff, last week, one application": (None, {"range": "week", "application": "11"}),
}


def fill_sql(rows: int) -> str:
    """``rows`` calls over the last 14 days, newest last; one in 200 to the rare API."""
    # Only integers and this module's constants are formatted in.
    return f"""
    INSERT INTO {TABLE} (request_id, client_request_id, time, api_id, version_id, tenant_id, application_id,
        key_prefix, method, path, status, latency_ms, bytes_in, bytes_out, cache_hit, error_code, client_ip,
        model, provider, upstream_model, tokens_estimated, pii_masked, fallbacks, channel)
    SELECT 'bench-' || g, '', now() - ((({rows} - g)::float / {rows}) * interval '14 days'),
        CASE WHEN g % 200 = 0 THEN {RARE_API} ELSE g % 8 + 1 END, g % 8 + 101, g % 25 + 1, g % 75 + 1,
        'pk' || (g % 60), 'GET', '/api/v1/items/' || (g % 1000),
        (ARRAY[200, 200, 200, 201, 204, 404, 429, 500, 502, 200])[g % 10 + 1], 20 + g % 50, 0, 512, false,
        CASE WHEN g % 10 IN (5, 6, 7, 8) THEN 'error' ELSE '' END, '10.0.0.1', '', '', '', false, 0, 0, ''
    FROM generate_series(1, {rows}) AS g
    """  # noqa: S608


def explain_queries() -> None:
    """In a Django subprocess (DATABASE_URL: the bench database): EXPLAIN each real query and
    print the plans as JSON."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone

    from analytics import explorer, reports
    from analytics.models import CallLog
    from analytics.reports import Period

    def run(sql: str, params: Any) -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        plan = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
        text = json.dumps(plan)
        return {
            "indexes": sorted(set(re.findall(r'"Index Name": "([^"]+)"', text))),
            "nodes": sorted(set(re.findall(r'"Node Type": "([^"]+)"', text))),
            "ms": plan["Execution Time"],
        }

    found: dict[str, Any] = {}
    for name, (tenant_id, params) in EXPLORER_QUERIES.items():
        filters = explorer.parse_filter(params)
        calls = CallLog.objects.all() if tenant_id is None else CallLog.objects.filter(tenant_id=tenant_id)
        query = filters.apply(calls).defer("prompt_capture", "response_capture").order_by("-time", "-id")[:51]
        sql, sql_params = query.query.sql_with_params()
        found[name] = run(sql, sql_params)
    tenant_calls = CallLog.objects.filter(tenant_id=7).order_by("-time").values_list("request_id", flat=True)
    one = tenant_calls[tenant_calls.count() // 2]  # a call from the middle of the table
    sql, sql_params = CallLog.objects.filter(tenant_id=7, request_id=one)[:1].query.sql_with_params()
    found["one call by request id"] = run(sql, sql_params)
    now = timezone.now()
    day = Period(now - reports.LENGTH["daily"], now)
    for label, tenant_id in (("trend report top errors, tenant", 7), ("trend report top errors, platform", None)):
        rows = (
            CallLog.objects.filter(time__gte=day.start, time__lt=day.end, status__gte=400, **reports._scope(tenant_id))
            .values("status", "error_code", "api_id")
            .annotate(count=Count("id"))
            .order_by("-count", "status", "error_code")[: reports.TOP]
        )
        sql, sql_params = rows.query.sql_with_params()
        found[label] = run(sql, sql_params)
    print(json.dumps(found))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_explain":
        explain_queries()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per ingest capacity run")
    parser.add_argument("--rounds", type=int, default=3, help="ingest runs with, and as many without, the indexes")
    parser.add_argument("--table-rows", type=int, default=1_000_000, help="calls in the table for the plans")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "calllog_indexes.json")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    import psycopg

    from analytics.ingest import ENTRIES_PER_READ
    from bench.ingest import Target, capacity
    from tests.plugins import postgres_server

    if reason := postgres_server.unavailable_reason():
        sys.exit(f"PostgreSQL is needed: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="portico-bench-indexes-"))
    target = Target("postgresql", workdir)
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "ingest": {}, "plans": {}}
    try:
        url = target.database_url.replace("postgres://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as db:
            # Migration 0009 dropped them: the "with" runs put them back as Django made them.
            migration = importlib.import_module(
                "analytics.migrations.0009_calllog_drop_single_column_api_tenant_indexes"
            )
            definitions = {
                name: f'CREATE INDEX "{name}" ON {TABLE} ("{column}")' for column, name in migration.INDEXES.items()
            }
            results["dropped"] = definitions
            print("single-column indexes:", ", ".join(definitions), flush=True)

            def set_indexes(present: bool) -> None:
                for name, definition in definitions.items():
                    db.execute(definition.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS") if present
                               else f'DROP INDEX IF EXISTS "{name}"')  # fmt: skip

            batch = ENTRIES_PER_READ["postgresql"]
            rates: dict[str, list[float]] = {"with": [], "without": []}
            for _round in range(args.rounds):
                for label in ("with", "without"):
                    set_indexes(label == "with")
                    print(f"  ingest, {label} the single-column indexes:", flush=True)
                    rates[label].append(capacity(target, "after", batch, args.records)["records_per_second"])
            medians = {label: statistics.median(values) for label, values in rates.items()}
            results["ingest"] = {
                "rates": rates,
                "medians": medians,
                "without_over_with": medians["without"] / medians["with"],
            }
            print(f"ingest medians: with {medians['with']:,.0f}, without {medians['without']:,.0f} records/s "
                  f"({medians['without'] / medians['with']:.2f}x)", flush=True)  # fmt: skip

            target.reset()
            set_indexes(True)
            print(f"filling {args.table_rows:,} calls for the plans...", flush=True)
            db.execute(fill_sql(args.table_rows))
            db.execute(f"VACUUM ANALYZE {TABLE}")
            for label in ("with", "without"):
                set_indexes(label == "with")
                db.execute(f"ANALYZE {TABLE}")
                explained = subprocess.run(
                    [sys.executable, "-m", "bench.calllog_indexes", "_explain"],
                    cwd=ROOT, env=target.env, capture_output=True, text=True,
                )  # fmt: skip
                if explained.returncode:
                    sys.exit(f"the EXPLAIN subprocess failed:\n{explained.stderr[-3000:]}")
                results["plans"][label] = json.loads(explained.stdout.strip().splitlines()[-1])
            set_indexes(True)
        print(f"{'query':40} {'with: indexes, ms':60} {'without: indexes, ms'}")
        for name, plan in results["plans"]["with"].items():
            other = results["plans"]["without"][name]
            print(f"{name:40} {', '.join(plan['indexes']) or '-':>46} {plan['ms']:8.2f}   "
                  f"{', '.join(other['indexes']) or '-':>46} {other['ms']:8.2f}")  # fmt: skip
    finally:
        target.stop()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"results in {args.out}")


if __name__ == "__main__":
    main()
