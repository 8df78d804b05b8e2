"""docker/'s Grafana dashboard and Prometheus alert rules query only metrics the real gateway
exports, with labels it sets; the rules file has Prometheus's structure; prometheus.yml scrapes
the gateway's metrics path with its ops token. The files are read with the small reader in
tests/ops/promql.py, so none of this needs promtool; when it is installed, the alerts are also
unit-tested with it (tests/ops/alerts_test.yml)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from portal.embedded_redis import free_port
from tests.llm.conftest import user
from tests.ops.promql import selectors

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "portico-gateway.json"
ALERTS = ROOT / "docker" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "docker" / "prometheus" / "prometheus.yml"
# Series Prometheus makes itself for every target, not the gateway.
SYNTHETIC = {"up": {"job", "instance"}}
DURATION = re.compile(r"^(\d+(ms|[smhdwy]))+$")


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def every_expr() -> list[tuple[str, str]]:
    return dashboard_exprs() + [(rule["alert"], rule["expr"]) for rule in alert_rules()]


# -- the files on their own ------------------------------------------------------------------------


def test_alert_rules_have_prometheus_structure():
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"} and document["groups"]
    names = set()
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
            assert rule["alert"] not in names, f"alert {rule['alert']} twice"
            names.add(rule["alert"])
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert isinstance(rule["expr"], str) and selectors(rule["expr"]), rule["alert"]
            if "for" in rule:
                assert DURATION.match(rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert all(isinstance(value, str) for value in [*rule["labels"].values(), *rule["annotations"].values()])
    # What operators were promised an alert for.
    assert {
        "PorticoGatewayNotScraped",
        "PorticoGatewayHigh5xxRatio",
        "PorticoGatewayHighP95Latency",
        "PorticoGatewayRedisDown",
        "PorticoCallLogSpoolGrowing",
        "PorticoCallLogRecordsDropped",
    } <= names


def test_prometheus_scrapes_the_gateway_metrics_with_the_ops_token_and_loads_the_rules():
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "portico-gateway"]
    assert job["metrics_path"] == "/_portico/metrics"
    assert job["static_configs"][0]["targets"] == ["gateway:8080"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/gateway_ops_token"}
    # The alert rules and the dashboard scrape job agree on the job's name.
    assert any('job="portico-gateway"' in rule["expr"] for rule in alert_rules())


def test_compose_runs_prometheus_and_grafana_on_these_files():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in prometheus["volumes"]}
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    assert prometheus["secrets"] == ["gateway_ops_token"]
    assert compose["secrets"]["gateway_ops_token"] == {"environment": "GATEWAY_OPS_TOKEN"}
    assert services["gateway"]["environment"]["GATEWAY_OPS_TOKEN"].startswith("${GATEWAY_OPS_TOKEN:?")
    grafana_mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in grafana["volumes"]}
    assert grafana_mounts["./grafana/dashboards"] == "/var/lib/grafana/dashboards"
    assert grafana_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    provider = yaml.safe_load((ROOT / "docker/grafana/provisioning/dashboards/portico.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load((ROOT / "docker/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert source["url"] == "http://prometheus:9090"
    # Every panel asks the provisioned data source, by its uid.
    uids = {panel["datasource"]["uid"] for panel in json.loads(DASHBOARD.read_text())["panels"]}
    assert uids == {source["uid"]}


def test_the_dashboard_covers_what_operators_watch():
    used = {selector.name for _title, expr in dashboard_exprs() for selector in selectors(expr)}
    assert {
        "portico_gateway_requests_total",
        "portico_gateway_request_duration_seconds_bucket",
        "portico_gateway_upstream_errors_total",
        "portico_gateway_calllog_backlog_bytes",
        "portico_gateway_calllog_dropped_total",
        "portico_gateway_redis_up",
        "portico_gateway_ai_tokens_total",
        "portico_gateway_ai_cost_usd_total",
    } <= used
    panel_ids = [panel["id"] for panel in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(panel_ids) == len(set(panel_ids))


# -- against the real gateway ----------------------------------------------------------------------


def protocol_refusal(port: int) -> None:
    """A request the HTTP server refuses before routing (a non-numeric Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: ten\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")


def exported(gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, its labels sorted) -> value, from the gateway's /metrics."""
    answer = requests.get(f"{gateway.url}/_portico/metrics", timeout=5)
    assert answer.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


@pytest.mark.gateway
@pytest.mark.django_db(transaction=True)
def test_every_metric_the_dashboard_and_the_alerts_query_is_exported_by_the_gateway(
    gateway, configure, upstream_a, ai_route
):
    ok = configure([upstream_a], plan={"requests_per_minute": 2})
    dead = configure([f"http://127.0.0.1:{free_port()}"])  # nothing listens there: upstream errors
    for _ in range(3):
        gateway.get(f"{ok.base_path}/echo", ok.key)  # 200, 200, then 429 (2 a minute)
    assert gateway.get(f"{ok.base_path}/echo", ok.key).status_code == 429
    assert gateway.get(f"{dead.base_path}/echo", dead.key).status_code == 502
    assert gateway.get(f"{ok.base_path}/echo", "pt_wrongkey.nope").status_code == 401
    protocol_refusal(gateway.port)
    route = ai_route()
    route.openai().chat.completions.create(model=route.alias, messages=user("hello"))

    wanted = [(where, selector) for where, expr in every_expr() for selector in selectors(expr)]
    expected_values = {
        ("portico_gateway_redis_up", ()): lambda v: v == 1,
        ("portico_gateway_requests_total", (("status", "429"),)): lambda v: v >= 1,
        ("portico_gateway_upstream_errors_total", (("kind", "connect"),)): lambda v: v >= 1,
        ("portico_gateway_protocol_refusals_total", (("status", "400"),)): lambda v: v >= 1,
        ("portico_gateway_ai_tokens_total", (("direction", "in"), ("provider", "openai"))): lambda v: v > 0,
        ("portico_gateway_ai_tokens_total", (("direction", "out"), ("provider", "openai"))): lambda v: v > 0,
        ("portico_gateway_ai_cost_usd_total", (("provider", "openai"),)): lambda v: v > 0,
        ("portico_gateway_calllog_backlog_bytes", (("store", "spool"),)): lambda v: v >= 0,
    }
    # Each worker adds its answer tallies to the shared files once a second, so the worker
    # that answers a scrape may not have counted the other's latest yet: poll.
    deadline = time.monotonic() + 15
    while True:
        samples = exported(gateway)
        labels_of: dict[str, set[str]] = {}  # sample name -> the label names its series carry
        for (name, series), _value in samples.items():
            labels_of.setdefault(name, set()).update(label for label, _ in series)
        labels_of.update(SYNTHETIC)
        missing = [
            f"{where}: {selector.name} {sorted(selector.labels)}"
            for where, selector in wanted
            if selector.name not in labels_of or not selector.labels <= labels_of[selector.name]
        ]
        wrong = [
            f"{key}: {samples.get(key)}"
            for key, ok in expected_values.items()
            if not (key in samples and ok(samples[key]))
        ]
        if not (missing or wrong) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert not missing, "queried but not exported (or without those labels):\n" + "\n".join(missing)
    assert not wrong, "\n".join(wrong)


def test_the_alerts_fire_on_their_situations_with_promtool():
    """``promtool test rules`` on tests/ops/alerts_test.yml, when promtool is installed
    (Debian's ``prometheus`` package); the structure test above runs without it."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    checked = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=Path(__file__).parent, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
