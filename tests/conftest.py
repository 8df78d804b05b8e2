"""Shared people and things, after healthchecks' test base.

Alice owns the Acme tenant, Bob is a developer in it, Vera is a viewer in it, and Charlie
owns Globex and must see none of Acme's things. Staff is a Portico administrator.
"""

import pytest
import redis as redis_lib
from django.conf import settings
from django.contrib.auth import get_user_model

from portal.models import Api, ApiVersion, Application, Membership, Plan, Role, Tenant, UpstreamTarget
from portal.services import lifecycle

PASSWORD = "correct-horse-battery-staple"


def make_user(username: str, *, staff: bool = False):
    return get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password=PASSWORD, is_staff=staff, is_superuser=staff
    )


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture(scope="session")
def _session_redis():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def fresh_failed_key_allowance(_session_redis):
    """Every test's requests come from 127.0.0.1, whose failed-key allowance (20 a minute,
    kept in the session's Redis) would otherwise carry over: one module's refused keys made
    the next module's bad key a 429 instead of the 401 it checks."""
    for key in _session_redis.scan_iter("portico:authfail:*"):
        _session_redis.delete(key)


@pytest.fixture
def staff(db):
    return make_user("staff", staff=True)


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def vera(db):
    return make_user("vera")


@pytest.fixture
def charlie(db):
    return make_user("charlie")


@pytest.fixture
def acme(alice, bob, vera):
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    Membership.objects.create(user=alice, tenant=tenant, role=Role.OWNER)
    Membership.objects.create(user=bob, tenant=tenant, role=Role.DEVELOPER)
    Membership.objects.create(user=vera, tenant=tenant, role=Role.VIEWER)
    return tenant


@pytest.fixture
def globex(charlie):
    tenant = Tenant.objects.create(name="Globex", slug="globex")
    Membership.objects.create(user=charlie, tenant=tenant, role=Role.OWNER)
    return tenant


@pytest.fixture
def publisher(db):
    return Tenant.objects.create(name="Publisher", slug="publisher")


@pytest.fixture
def draft_version(publisher):
    api = Api.objects.create(slug="weather", name="Weather", owner=publisher, description="Forecasts")
    version = ApiVersion.objects.create(api=api, version="v1", base_path="/weather/v1")
    UpstreamTarget.objects.create(version=version, url="http://127.0.0.1:9")
    return version


@pytest.fixture
def api(draft_version, staff):
    """A published API with a free auto-approved plan and a gold plan that needs approval."""
    lifecycle.publish_version(draft_version, actor=staff)
    Plan.objects.create(api=draft_version.api, name="Free", requests_per_minute=60)
    Plan.objects.create(api=draft_version.api, name="Gold", requests_per_second=100, requires_approval=True)
    return draft_version.api


@pytest.fixture
def free_plan(api):
    return api.plans.get(name="Free")


@pytest.fixture
def gold_plan(api):
    return api.plans.get(name="Gold")


@pytest.fixture
def app(acme, alice):
    return Application.objects.create(tenant=acme, name="Acme App", created_by=alice)


@pytest.fixture
def globex_app(globex, charlie):
    return Application.objects.create(tenant=globex, name="Globex App", created_by=charlie)


@pytest.fixture
def cache_down(settings):
    """The portal's cache pointed at an address where no Redis listens (an outage)."""
    from portal.embedded_redis import free_port

    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
