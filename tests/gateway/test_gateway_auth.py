"""Who gets through the gateway: every authentication and lifecycle outcome."""

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from portal.models import ApiKey
from portal.services import keys, lifecycle
from portal.services.config_signal import current_config_version

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


def error_code(response):
    assert response.headers["Content-Type"] == "application/json"
    return response.json()["error"]["code"]


def test_valid_key_is_proxied_with_bearer_or_x_api_key(gateway, configure, upstream_a):
    config = configure([upstream_a])
    assert gateway.get(f"{config.base_path}/echo", config.key).json()["upstream"] == "a"
    response = gateway.get(f"{config.base_path}/echo", headers={"X-API-Key": config.key})
    assert response.status_code == 200 and response.json()["path"] == "/echo"


def test_missing_key_is_rejected_with_401(gateway, configure, upstream_a):
    config = configure([upstream_a])
    response = gateway.get(f"{config.base_path}/echo")
    assert response.status_code == 401 and error_code(response) == "missing_api_key"
    assert "Bearer" in response.headers["WWW-Authenticate"]


def test_unknown_key_is_rejected_with_401(gateway, configure, upstream_a):
    config = configure([upstream_a])
    forged = config.key_prefix + ".not-the-secret"
    assert error_code(gateway.get(f"{config.base_path}/echo", forged)) == "invalid_api_key"
    assert gateway.get(f"{config.base_path}/echo", "garbage").status_code == 401


def _use(gateway, config, times=6):
    """Calls that succeed, on fresh connections so that both workers have served the key."""
    for _ in range(times):
        answer = requests.get(f"{gateway.url}{config.base_path}/echo", headers={"X-API-Key": config.key}, timeout=2)
        assert answer.status_code == 200


def test_expired_key_is_rejected_with_401_even_after_being_used(gateway, configure, upstream_a):
    config = configure([upstream_a])
    _use(gateway, config)
    ApiKey.objects.filter(prefix=config.key_prefix).update(expires_at=timezone.now() - timedelta(seconds=1))
    keys.create_api_key(config.application, actor=config.owner)  # any change bumps the config version
    gateway.wait_for_config()
    response = gateway.get(f"{config.base_path}/echo", config.key)
    assert response.status_code == 401 and error_code(response) == "expired_api_key"


def test_a_key_in_use_stops_working_the_moment_it_expires(gateway, configure, upstream_a):
    config = configure([upstream_a])
    ApiKey.objects.filter(prefix=config.key_prefix).update(expires_at=timezone.now() + timedelta(seconds=2))
    keys.create_api_key(config.application, actor=config.owner)  # publishes the expiry
    gateway.wait_for_config()
    _use(gateway, config)
    time.sleep(2.1)  # no configuration change in between: the expiry alone must refuse it
    response = gateway.get(f"{config.base_path}/echo", config.key)
    assert response.status_code == 401 and error_code(response) == "expired_api_key"


def test_revoked_key_is_rejected_with_401_even_after_being_used(gateway, configure, upstream_a):
    config = configure([upstream_a])
    _use(gateway, config)
    keys.revoke_api_key(ApiKey.objects.get(prefix=config.key_prefix), actor=config.owner)
    gateway.wait_for_config()
    response = gateway.get(f"{config.base_path}/echo", config.key)
    assert response.status_code == 401 and error_code(response) == "revoked_api_key"


def test_key_without_approved_subscription_gets_403(gateway, configure, upstream_a):
    config = configure([upstream_a], subscribe=False)
    response = gateway.get(f"{config.base_path}/echo", config.key)
    assert response.status_code == 403 and error_code(response) == "not_subscribed"


def test_key_of_one_api_cannot_call_another(gateway, configure, upstream_a):
    first = configure([upstream_a])
    second = configure([upstream_a])
    assert gateway.get(f"{second.base_path}/echo", first.key).status_code == 403


def test_unknown_route_is_404_json(gateway, configure, upstream_a):
    config = configure([upstream_a])
    response = gateway.get("/no-such-api/echo", config.key)
    assert response.status_code == 404 and error_code(response) == "route_not_found"


def test_retired_version_answers_410(gateway, configure, upstream_a, staff):
    config = configure([upstream_a])
    lifecycle.retire_version(config.version, actor=staff)
    gateway.wait_for_config()
    response = gateway.get(f"{config.base_path}/echo", config.key)
    assert response.status_code == 410 and error_code(response) == "version_retired"


def test_deprecated_version_is_served_with_deprecation_sunset_and_link(gateway, configure, upstream_a, staff):
    config = configure([upstream_a])
    sunset = timezone.now().replace(microsecond=0) + timedelta(days=30)
    lifecycle.deprecate_version(config.version, actor=staff, sunset_at=sunset)
    gateway.wait_for_config()
    response = gateway.get(f"{config.base_path}/echo", config.key)
    assert response.status_code == 200
    assert response.headers["Deprecation"].startswith("@")
    assert response.headers["Sunset"] == sunset.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 'rel="deprecation"' in response.headers["Link"] and config.api.slug in response.headers["Link"]


def test_the_consumer_key_is_never_forwarded_upstream(gateway, configure, upstream_a):
    config = configure([upstream_a])
    seen = gateway.get(f"{config.base_path}/echo", config.key).json()["headers"]
    assert "Authorization" not in seen
    seen = gateway.get(f"{config.base_path}/echo", headers={"X-API-Key": config.key}).json()["headers"]
    assert "X-Api-Key" not in seen and "X-API-Key" not in seen
    assert config.key not in str(seen)


def test_forwarding_headers_and_request_id(gateway, configure, upstream_a):
    config = configure([upstream_a])
    response = gateway.get(
        f"{config.base_path}/echo?x=1",
        config.key,
        headers={"X-Request-ID": "client-req-12345", "Connection": "keep-alive, X-Private", "X-Private": "secret"},
    )
    seen = response.json()
    assert response.headers["X-Request-ID"] == "client-req-12345"
    assert seen["headers"]["X-Request-ID"] == "client-req-12345"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert seen["headers"]["X-Forwarded-Proto"] == "http"
    assert seen["headers"]["X-Forwarded-Host"] == gateway.url.removeprefix("http://")
    assert "X-Private" not in seen["headers"]  # named in Connection: hop-by-hop
    assert seen["path"] == "/echo?x=1"
    generated = gateway.get(f"{config.base_path}/echo", config.key, headers={"X-Request-ID": "bad id!"})
    assert generated.headers["X-Request-ID"] != "bad id!" and len(generated.headers["X-Request-ID"]) == 32


def test_config_change_is_enforced_by_every_worker_within_one_second(gateway, configure, upstream_a):
    config = configure([upstream_a])
    _use(gateway, config)
    keys.revoke_api_key(ApiKey.objects.get(prefix=config.key_prefix), actor=config.owner)
    revoked_at = time.monotonic()
    new_version = current_config_version()
    # Both workers report, on fresh connections (spread by the kernel), that they serve the change...
    fresh_workers: set[int] = set()
    while len(fresh_workers) < 2 and time.monotonic() - revoked_at < 1.0:
        ready = requests.get(f"{gateway.url}/readyz", timeout=1).json()
        if ready["config_version"] >= new_version:
            fresh_workers.add(ready["pid"])
    assert len(fresh_workers) == 2, "both workers must load the change within 1 s"
    # ... and the key is refused, whichever worker answers.
    statuses = [
        requests.get(f"{gateway.url}{config.base_path}/echo", headers={"X-API-Key": config.key}, timeout=2).status_code
        for _ in range(8)
    ]
    assert time.monotonic() - revoked_at < 1.0 and statuses == [401] * 8, statuses


def test_key_in_the_query_string_is_ignored_unless_enabled(gateway, configure, upstream_a):
    config = configure([upstream_a])
    response = gateway.get(f"{config.base_path}/echo?api_key={config.key}")
    assert response.status_code == 401 and error_code(response) == "missing_api_key"


def test_repeated_failed_auth_from_one_address_is_limited(gateway, configure, upstream_a):
    import http.client

    config = configure([upstream_a])

    def attempt_from(address: str, key: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5, source_address=(address, 0))
        conn.request("GET", f"{config.base_path}/echo", headers={"X-API-Key": key})
        status = conn.getresponse().status
        conn.close()
        return status

    statuses = [attempt_from("127.0.0.9", config.key_prefix + ".wrong") for _ in range(30)]
    # Exactly 20 failures are allowed across both workers; every later attempt is refused with 429.
    assert statuses == [401] * 20 + [429] * 10
    # The block is for that address only; the same key from elsewhere still works.
    assert attempt_from("127.0.0.1", config.key) == 200


def test_the_portal_origin_may_call_the_gateway_from_a_browser(gateway, configure, upstream_a, settings):
    config = configure([upstream_a])
    origin = settings.PORTICO_PORTAL_URL
    preflight = gateway.request(
        "OPTIONS",
        f"{config.base_path}/echo",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert preflight.headers["Access-Control-Allow-Headers"] == "x-api-key"
    answer = gateway.get(f"{config.base_path}/echo", headers={"Origin": origin, "X-API-Key": config.key})
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    other = gateway.get(f"{config.base_path}/echo", headers={"Origin": "https://evil.example", "X-API-Key": config.key})
    assert "Access-Control-Allow-Origin" not in other.headers
