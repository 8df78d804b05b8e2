"""Operations endpoints live under /_portico/: liveness for anyone; readiness and metrics
for peers in GATEWAY_OPS_ALLOW (loopback by default) or holders of GATEWAY_OPS_TOKEN, and a
JSON 403 ``ops_forbidden`` for everyone else. The legacy /healthz, /readyz and /metrics
answer only allowed peers, and only where no API is routed: an API at /metrics wins."""

import os
import secrets

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from portal.models import Api, ApiVersion, Application, Membership, Plan, Role, Tenant, UpstreamTarget
from portal.services import keys, lifecycle, subscriptions
from tests.gateway.conftest import GatewayProcess
from tests.gateway.rawhttp import build_request, exchange

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

TOKEN = secrets.token_urlsafe(24)
OTHER = "127.0.0.2"  # not in the default GATEWAY_OPS_ALLOW


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    process = GatewayProcess(
        settings.REDIS_URL, tmp_path_factory.mktemp("gateway-ops"), extra_env={"GATEWAY_OPS_TOKEN": TOKEN}
    )
    process.start()
    yield process
    process.stop()


def get(gateway, path: str, *, source: str = "127.0.0.1", headers=()):
    return exchange(gateway.port, build_request("GET", path, list(headers)), source=source)


def bearer(token: str):
    return [("Authorization", f"Bearer {token}")]


def assert_readyz(answer) -> None:
    assert answer.status == 200 and answer.header("content-type") == "application/json", answer
    assert answer.json()["status"] == "ready"


def assert_metrics(answer) -> None:
    assert answer.status == 200 and answer.header(
        "content-type",
    ).startswith("text/plain"), answer
    assert b"# TYPE " in answer.body


def assert_refused(answer, status: int, code: str) -> None:
    assert answer.status == status and answer.header("content-type") == "application/json", answer
    assert answer.error_code == code, answer.body


def test_portico_healthz_answers_anyone(gateway):
    for source in ("127.0.0.1", OTHER, "127.0.0.3"):
        answer = get(gateway, "/_portico/healthz", source=source)
        assert answer.status == 200 and answer.header("content-type") == "application/json", (source, answer)
        assert answer.json() == {"status": "ok"}


def test_portico_readyz_and_metrics_answer_an_allowed_peer(gateway):
    assert_readyz(get(gateway, "/_portico/readyz"))
    assert_metrics(get(gateway, "/_portico/metrics"))


def test_portico_readyz_and_metrics_answer_anyone_with_the_ops_token(gateway):
    assert_readyz(get(gateway, "/_portico/readyz", source=OTHER, headers=bearer(TOKEN)))
    assert_metrics(get(gateway, "/_portico/metrics", source=OTHER, headers=bearer(TOKEN)))


@pytest.mark.parametrize(
    "headers",
    [
        [],
        bearer("wrong-" + TOKEN),
        bearer(TOKEN[:-1]),
        [("Authorization", TOKEN)],  # not a bearer token
        [("X-API-Key", TOKEN)],
    ],
    ids=["no-token", "wrong-token", "token-prefix", "not-bearer", "x-api-key"],
)
def test_portico_readyz_and_metrics_refuse_other_peers_with_403(gateway, headers):
    for path in ("/_portico/readyz", "/_portico/metrics"):
        assert_refused(get(gateway, path, source=OTHER, headers=headers), 403, "ops_forbidden")


def test_legacy_ops_paths_answer_only_allowed_peers(gateway):
    assert_readyz(get(gateway, "/readyz"))  # local probes (and this harness) still use it
    assert get(gateway, "/healthz").status == 200
    assert_metrics(get(gateway, "/metrics"))
    for path in ("/readyz", "/healthz", "/metrics"):
        for headers in ([], bearer(TOKEN)):
            assert_refused(get(gateway, path, source=OTHER, headers=headers), 404, "route_not_found")


def publish_api_at(gateway, base_path: str, target: str) -> str:
    """A published API version at ``base_path`` with a subscribed application; its key."""
    suffix = f"{os.getpid()}-{secrets.token_hex(3)}"
    user_model = get_user_model()
    staff = user_model.objects.create_user(f"ops-staff-{suffix}", is_staff=True, is_superuser=True)
    owner = user_model.objects.create_user(f"ops-owner-{suffix}")
    tenant = Tenant.objects.create(name=f"ops-{suffix}", slug=f"ops-{suffix}")
    Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
    api = Api.objects.create(slug=f"ops-{suffix}", name=f"ops-{suffix}", owner=tenant)
    version = ApiVersion.objects.create(api=api, version="v1", base_path=base_path)
    UpstreamTarget.objects.create(version=version, url=target)
    lifecycle.publish_version(version, actor=staff)
    plan = Plan.objects.create(api=api, name="Plan")
    application = Application.objects.create(tenant=tenant, name="App")
    subscriptions.request_subscription(application, api, plan, actor=owner)
    _key, secret = keys.create_api_key(application, actor=owner)
    gateway.wait_for_config()
    return secret


def test_an_api_published_at_metrics_wins_over_the_legacy_endpoint(gateway, upstream_a):
    # Last in the module: the route stays in the gateway's snapshot after the test's data is gone.
    key = publish_api_at(gateway, "/metrics", upstream_a)
    for source in (OTHER, "127.0.0.1"):
        for path, upstream_path in (("/metrics/echo", "/echo"), ("/metrics", "/"), ("/metrics?x=1", "/?x=1")):
            answer = get(gateway, path, source=source, headers=[("X-API-Key", key)])
            assert answer.status == 200, (source, path, answer)
            is_json = (answer.header("content-type") or "").startswith("application/json")
            assert is_json, f"{path} from {source} was answered by the gateway's metrics, not the API"
            echo = answer.json()
            assert (echo["upstream"], echo["path"]) == ("a", upstream_path), (source, path)
        # Without a key it is the API that refuses, not the metrics that answer.
        assert_refused(get(gateway, "/metrics", source=source), 401, "missing_api_key")
    assert_metrics(get(gateway, "/_portico/metrics"))
    assert_readyz(get(gateway, "/readyz", source="127.0.0.1"))
