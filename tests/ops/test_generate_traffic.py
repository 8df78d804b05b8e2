"""``manage.py generate_traffic`` against the real gateway, the demo upstream and the mock LLM
provider, after ``seed_demo``: a few seconds of traffic, ingested like production's, hold
several APIs and applications, successes, 4xx, 429s, upstream errors and AI calls."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from analytics.ingest import ingest_call_logs
from analytics.models import CallLog
from portal.embedded_redis import free_port
from portal.management.commands import seed_demo
from portal.models import ApiKey, Application
from portal.traffic import KEY_NAME
from tests.gateway.conftest import stop as stop_process
from tests.gateway.conftest import wait_for_http

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_upstream():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "portal.demo_upstream", "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/", timeout=15)
    yield url
    stop_process(process)


@pytest.fixture
def demo(gateway, mock_llm, demo_upstream, monkeypatch):
    """seed_demo pointed at this test's upstream and mock provider, served by the gateway."""
    monkeypatch.setattr(seed_demo, "DEMO_UPSTREAM", demo_upstream)
    monkeypatch.setattr(seed_demo, "DEMO_LLM", mock_llm.url)
    call_command("seed_demo", stdout=io.StringIO())
    gateway.wait_for_config()


def ingested_since(started) -> list[CallLog]:
    """Ingest the stream until nothing new arrives (the gateway ships every 50 ms)."""
    quiet_rounds = 0
    while quiet_rounds < 3:
        quiet_rounds = 0 if ingest_call_logs(claim_idle_ms=0) else quiet_rounds + 1
        time.sleep(0.3)
    return list(CallLog.objects.filter(time__gte=started))


def test_the_demo_upstream_answers_a_status_path_with_that_status(demo_upstream):
    import requests

    assert requests.get(f"{demo_upstream}/status/503", timeout=5).status_code == 503
    assert requests.get(f"{demo_upstream}/status/204", timeout=5).status_code == 200  # errors only
    assert requests.get(f"{demo_upstream}/forecast?delay_ms=x", timeout=5).status_code == 200


def test_a_few_seconds_of_traffic_hold_every_kind_of_call(gateway, demo):
    started = timezone.now() - timedelta(seconds=1)
    out = io.StringIO()
    call_command(
        "generate_traffic", "--gateway", gateway.url, "--duration", "8", "--rate", "25", "--seed", "7", stdout=out
    )
    summary = out.getvalue()
    assert "Done:" in summary and "0 without an answer" in summary, summary

    calls = ingested_since(started)
    statuses = {call.status for call in calls}
    # ~200 asked for. The mix is seeded, so the order of kinds is fixed: by the 70th call every
    # kind has come up, and "Acme Trial" (5 a minute, a burst of 5) has made its 6th call.
    assert len(calls) >= 80, summary
    assert any(200 <= s < 300 for s in statuses)
    assert {401, 429} <= statuses and statuses & {404, 410}, statuses
    assert statuses & {500, 502, 503}, statuses  # the demo upstream's errors, passed on
    assert any(call.error_code == "rate_limited" for call in calls)

    demo_apps = set(Application.objects.filter(tenant__slug__in=["acme", "globex"]).values_list("pk", flat=True))
    apps = {call.application_id for call in calls if call.application_id in demo_apps}
    assert len(apps) >= 3, apps
    tenants = {call.tenant_id for call in calls if call.tenant_id is not None}
    assert len(tenants) == 2  # Acme and Globex
    apis = {call.api_id for call in calls if call.api_id is not None and 200 <= call.status < 300}
    assert len(apis) >= 3  # Weather, Payments and the AI API, answered

    ai = [call for call in calls if call.model and call.status == 200]
    assert len(ai) >= 5 and all(call.tokens_out for call in ai if call.path.endswith("/chat/completions"))
    assert len({call.model for call in ai}) >= 2
    assert any(call.path == "/v1/embeddings" for call in ai)
    assert any(call.cost not in (None, "0") for call in ai)


def test_each_run_issues_fresh_keys_and_revokes_the_last_runs(gateway, demo):
    for _ in range(2):
        call_command(
            "generate_traffic", "--gateway", gateway.url, "--duration", "0.5", "--rate", "5", stdout=io.StringIO()
        )
    generated = ApiKey.objects.filter(name=KEY_NAME)
    assert generated.filter(revoked_at__isnull=True).count() == 4  # one usable key per application
    assert generated.filter(revoked_at__isnull=False).count() == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "invalid"),
        (["--rate", "abc"], "invalid"),
        (["--concurrency", "100000"], "invalid"),
        (["--gateway", "ftp://x"], "is a URL"),
    ],
)
def test_bad_arguments_are_refused_clearly(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("generate_traffic", *args, stdout=io.StringIO())


def test_without_the_demo_it_says_to_seed_first(gateway):
    with pytest.raises(CommandError, match="run `manage.py seed_demo` first"):
        call_command("generate_traffic", "--gateway", gateway.url, "--duration", "1", stdout=io.StringIO())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_stops_it_cleanly_with_a_summary(gateway, demo, signum, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "PYTHONUNBUFFERED": "1",
    }
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "generate_traffic", "--gateway", gateway.url, "--rate", "10"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        lines = []
        while not any(line.startswith("Sending") for line in lines):  # the keys are served
            line = process.stdout.readline()
            assert line, f"it stopped: {''.join(lines)} {errors.read_text()[-2000:]}"
            lines.append(line)
        time.sleep(1.5)
        process.send_signal(signum)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = errors.read_text()
    assert process.returncode == 0, err[-2000:]
    assert "Done:" in out and "Traceback" not in err, (out, err[-2000:])


@pytest.mark.parametrize("target", ["http://example.com:8080", "https://10.0.0.5", "http://127.0.0.1.example.com"])
def test_it_sends_its_keys_only_to_loopback_or_the_configured_gateway(gateway, demo, target):
    # Each run issues live keys and sends them as Bearer tokens: a --gateway naming another
    # host would hand them to it. Refused before any key is issued.
    with pytest.raises(CommandError, match="loopback address or the configured gateway"):
        call_command("generate_traffic", "--gateway", target, "--duration", "1", stdout=io.StringIO())
    assert not ApiKey.objects.filter(name=KEY_NAME).exists()


def test_the_configured_gateway_and_loopback_names_are_accepted():
    from portal.services.errors import InvalidInput
    from portal.traffic import check_gateway

    for url in ("http://127.0.0.1:8080", "http://localhost:9000/", "http://[::1]:8080", "https://gw.example.com/"):
        check_gateway(url, "https://GW.example.com")
    with pytest.raises(InvalidInput):
        check_gateway("https://gw.example.com:8443", "https://gw.example.com")
