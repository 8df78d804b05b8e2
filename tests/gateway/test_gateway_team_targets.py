"""Issue 14, connect-time side: an upstream target a provider team set is reached only at a
public address, or one in PORTICO_UPSTREAM_ALLOWED_NETWORKS, checked by the gateway on every
new connection; a staff-set target is not checked. Real gateway under gunicorn, real
loopback upstreams.

The portal's save-time check would refuse a team's loopback URL, so these tests let the
portal side allow loopback (as if the name had resolved to a public address when it was
saved, and was repointed at loopback afterwards) while the gateway allows nothing.
"""

import re
import time
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings

from portal.models import UpstreamTarget
from portal.services import provider
from portal.services.config_signal import publish_config_change
from portal.services.provider import TargetSpec
from tests.gateway.conftest import GatewayProcess
from tests.gateway.rawhttp import find_call_record

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

PROBE_PATH = "/health-probe"


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    """This module's gateway: no network allowed for teams' targets, and active health
    probes, so a probe that bypassed the check would show at the upstream."""
    process = GatewayProcess(
        settings.REDIS_URL,
        tmp_path_factory.mktemp("gateway-team-targets"),
        extra_env={
            "PORTICO_UPSTREAM_ALLOWED_NETWORKS": "",
            "GATEWAY_ACTIVE_HEALTH_PATH": PROBE_PATH,
            "GATEWAY_ACTIVE_HEALTH_INTERVAL": "0.2",
        },
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def portal_allows_loopback(settings):
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = ["127.0.0.0/8"]


def set_by_team(gateway, config, *urls: str) -> None:
    """Replace the version's targets as its team's owner would, through the provider service."""
    provider.update_version(config.version, actor=config.owner, targets=[TargetSpec(url) for url in urls])
    assert list(
        UpstreamTarget.objects.filter(version=config.version).values_list("requires_public_address", flat=True)
    ) == [True] * len(urls)
    gateway.wait_for_config()


def assert_address_refused(answer) -> None:
    assert answer.status_code == 502, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "upstream_address_refused"


def peer_refusals(gateway) -> float:
    text = gateway.get("/_portico/metrics").text
    found = re.search(r'^portico_gateway_upstream_errors_total\{kind="peer_refused"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_team_target_on_loopback_is_refused_and_a_staff_one_at_the_same_address_works(
    gateway, configure, upstream_a, portal_allows_loopback, redis_client
):
    staff_set = configure([upstream_a])
    team_set = configure([upstream_a])
    set_by_team(gateway, team_set, upstream_a)
    before = peer_refusals(gateway)

    # The staff one first, on the same client connection (so the same worker): its pooled
    # upstream connection to this host and port must not be lent to the team's target.
    for _ in range(3):
        assert gateway.get(f"{staff_set.base_path}/echo", staff_set.key).status_code == 200
    for method in ("GET", "POST"):
        answer = gateway.request(
            method, f"{team_set.base_path}/echo", team_set.key, data=b"x" if method == "POST" else None
        )
        assert_address_refused(answer)
    assert gateway.get(f"{staff_set.base_path}/echo", staff_set.key).status_code == 200

    record = find_call_record(redis_client, answer.headers["x-request-id"])
    assert record["status"] == 502 and record["error_code"] == "upstream_address_refused"
    assert peer_refusals(gateway) >= before + 2


def test_a_team_target_named_localhost_is_refused(gateway, configure, upstream_a, portal_allows_loopback):
    config = configure([upstream_a])
    set_by_team(gateway, config, f"http://localhost:{urlsplit(upstream_a).port}")
    assert_address_refused(gateway.get(f"{config.base_path}/echo", config.key))


def test_a_refused_team_target_beside_a_staff_one_leaves_the_traffic_to_it(gateway, configure, upstream_a, upstream_b):
    # The team-set target is refused and ejected; a GET is retried on the staff-set one, so
    # the version keeps answering from the target it may reach.
    config = configure([upstream_a], retries=1)
    UpstreamTarget.objects.create(version=config.version, url=upstream_b, requires_public_address=True)
    publish_config_change("test: a team target beside a staff one")
    gateway.wait_for_config()
    upstreams = {gateway.get(f"{config.base_path}/echo", config.key).json()["upstream"] for _ in range(6)}
    assert upstreams == {"a"}


def test_active_health_probes_never_reach_a_refused_team_target(gateway, configure, upstream_b, portal_allows_loopback):
    config = configure([upstream_b])
    set_by_team(gateway, config, upstream_b)
    seen = requests.get(f"{upstream_b}/count", timeout=2).json()["requests"]
    time.sleep(1.0)  # five probe rounds per worker
    assert_address_refused(gateway.get(f"{config.base_path}/echo", config.key))
    assert requests.get(f"{upstream_b}/count", timeout=2).json()["requests"] == seen


def test_with_loopback_allowed_the_gateway_connects_a_team_target(
    configure, upstream_a, portal_allows_loopback, tmp_path
):
    allowing = GatewayProcess(
        settings.REDIS_URL, tmp_path, extra_env={"PORTICO_UPSTREAM_ALLOWED_NETWORKS": "127.0.0.0/8"}
    )
    allowing.start()
    try:
        config = configure([upstream_a])
        set_by_team(allowing, config, upstream_a, f"http://localhost:{urlsplit(upstream_a).port}")
        for _ in range(4):
            answer = allowing.get(f"{config.base_path}/echo", config.key)
            assert answer.status_code == 200 and answer.json()["upstream"] == "a", answer.text
    finally:
        allowing.stop()
