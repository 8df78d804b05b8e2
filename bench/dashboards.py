"""Dashboard and log-explorer benchmark: the time a page takes with a large call log, as a
ratio to the same page with a small one, measured in the same run.

``python -m bench.dashboards [--small 10000] [--large 1000000]``. For each size, in a
throwaway SQLite database (migrated; Acme and nine other tenants, an owner each, a staff
user): that many calls spread over the last six days (mixed statuses, APIs, applications,
keys, some AI calls), inserted with executemany, then the real rollup runs
(``analytics.rollups.roll_up_all``). Then each page is fetched through Django's test
client (the full view, template and middleware stack, no HTTP server) ``--repeat`` times
after a warm-up, and the median kept:

- ``/usage/?range=hour|day|week|month`` as Acme's owner, ``/staff/analytics/?range=day|week``;
- ``/usage/calls/`` (first page), the 20th page by keyset cursor, one call by request id,
  and a CSV export of the last hour.

Dashboards read the rollups, whose row count grows with the number of distinct dimension
combinations per bucket rather than with the calls; the explorer reads index ranges of
``(tenant_id, time)``. The ratio large/small says how much of that holds. Results go to
``var/bench/dashboards.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TENANTS = 10
PAGES = [
    ("usage hour", "/usage/?range=hour"),
    ("usage day", "/usage/?range=day"),
    ("usage week", "/usage/?range=week"),
    ("usage month", "/usage/?range=month"),
    ("staff day", "/staff/analytics/?range=day"),
    ("staff week", "/staff/analytics/?range=week"),
    ("calls page 1", "/usage/calls/?range=week"),
    ("calls page 20", "@page20"),
    ("one call", "@call"),
    ("export last hour", "/usage/calls/export.csv?range=hour"),
]


def _fill(path: str, calls: int, tenant_ids: list[int], now: float) -> None:
    """``calls`` rows over the last six days, straight into SQLite (data, not the subject)."""
    rng = random.Random(12)
    db = sqlite3.connect(path)
    columns = (
        "request_id, client_request_id, time, api_id, version_id, tenant_id, application_id, key_prefix, "
        "method, path, status, latency_ms, bytes_in, bytes_out, cache_hit, error_code, client_ip, model, "
        "tokens_in, tokens_out, cost, provider, upstream_model, tokens_estimated, pii_masked, fallbacks"
    )
    insert = f"INSERT INTO analytics_calllog ({columns}) VALUES ({','.join('?' * 26)})"  # noqa: S608 (constants only)
    span = 6 * 86400
    statuses = (200, 200, 200, 200, 200, 201, 204, 304, 400, 404, 429, 500, 502)
    rows = []
    for n in range(calls):
        at = now - span * (n / calls) - rng.random()
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}"
        tenant = tenant_ids[n % len(tenant_ids)]
        status = statuses[n % len(statuses)]
        ai = n % 7 == 0
        rows.append(
            (
                f"bench-{n:09d}",
                "",
                when,
                1 + n % 5,
                10 + n % 5,
                tenant,
                tenant * 100 + n % 3,
                f"pk_{tenant}_{n % 3}",
                "GET",
                f"/api{n % 5}/v1/items/{n % 1000}",
                status,
                rng.lognormvariate(3.0, 0.8),
                200,
                900,
                0,
                "upstream_error" if status >= 500 else "",
                "10.0.0.1",
                "mock-small" if ai else "",
                120 if ai else None,
                300 if ai else None,
                "0.0004" if ai else None,
                "mock" if ai else "",
                "",
                0,
                0,
                0,
            )
        )
        if len(rows) == 50_000:
            db.executemany(insert, rows)
            rows = []
    if rows:
        db.executemany(insert, rows)
    db.commit()
    db.close()


def measure(calls: int, repeat: int) -> dict[str, Any]:
    """Run in a child process whose DATABASE_URL is a fresh SQLite file."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from analytics.models import CallLog, Rollup
    from analytics.rollups import roll_up_all
    from portal.models import Membership, Role, Tenant

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    staff = users.create_user("staff", password=None, is_staff=True)
    tenants = []
    owner = None
    for t in range(TENANTS):
        tenant = Tenant.objects.create(name=f"Tenant {t}", slug=f"tenant-{t}")
        user = users.create_user(f"owner{t}", password=None)
        Membership.objects.create(user=user, tenant=tenant, role=Role.OWNER)
        tenants.append(tenant.pk)
        owner = owner or user
    now = time.time()
    started = time.perf_counter()
    _fill(settings.DATABASES["default"]["NAME"], calls, tenants, now)
    filled = time.perf_counter() - started
    started = time.perf_counter()
    roll_up_all(now=timezone.now())
    rolled = time.perf_counter() - started

    client = Client()
    client.force_login(owner)
    staff_client = Client()
    staff_client.force_login(staff)
    first = client.get("/usage/calls/?range=week")
    page20 = "/usage/calls/?range=week"
    depth = 1
    while depth < 20:  # fewer when the small log has fewer pages (reported as page_depth)
        found = re.search(r'id="next-page" href="[^"]*after=([A-Za-z0-9_-]+)"', client.get(page20).content.decode())
        if found is None:
            break
        page20 = f"/usage/calls/?range=week&after={found.group(1)}"
        depth += 1
    one = CallLog.objects.filter(tenant_id=tenants[0]).order_by("-time")[calls // (2 * TENANTS)].request_id
    assert first.status_code == 200
    results: dict[str, Any] = {
        "calls": CallLog.objects.count(),
        "rollup_rows": Rollup.objects.count(),
        "fill_s": round(filled, 1),
        "rollup_s": round(rolled, 1),
        "page_depth": depth,
        "pages_ms": {},
    }
    for name, url in PAGES:
        url = page20 if url == "@page20" else f"/usage/calls/{one}/" if url == "@call" else url
        who = staff_client if url.startswith("/staff/") else client
        timings = []
        for attempt in range(repeat + 1):
            started = time.perf_counter()
            response = who.get(url)
            if hasattr(response, "streaming_content"):
                b"".join(response.streaming_content)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (url, response.status_code)
            if attempt:  # the first is a warm-up
                timings.append(elapsed * 1000)
        results["pages_ms"][name] = round(statistics.median(timings), 2)
    return results


def _child(calls: int, repeat: int, directory: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{directory / f'bench-{calls}.sqlite3'}",
        "PORTICO_VAR_DIR": str(directory),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "1",
    }
    out = subprocess.run(
        [sys.executable, "-m", "bench.dashboards", "--child", str(calls), "--repeat", str(repeat)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.repeat)))
        return
    directory = Path(tempfile.mkdtemp(prefix="portico-bench-dashboards-"))
    try:
        small = _child(args.small, args.repeat, directory)
        large = _child(args.large, args.repeat, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    report = {"small": small, "large": large, "ratio": {}}
    print(f"{'page':<20}{args.small:>12,} calls{args.large:>14,} calls{'ratio':>8}")
    for name, _url in PAGES:
        a, b = small["pages_ms"][name], large["pages_ms"][name]
        report["ratio"][name] = round(b / a, 2)
        print(f"{name:<20}{a:>15.1f} ms{b:>17.1f} ms{b / a:>8.2f}")
    for key in ("calls", "rollup_rows", "fill_s", "rollup_s", "page_depth"):
        print(f"{key:<20}{small[key]:>18}{large[key]:>20}")
    out = ROOT / "var" / "bench" / "dashboards.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
