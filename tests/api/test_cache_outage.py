"""With the cache (Redis) unreachable, the API's throttle and key-creation limit fail open:
people keep working, nothing answers 500."""

import pytest

from portal.embedded_redis import free_port
from portal.models import ApiKey
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def cache_down(settings):
    nobody_listens = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": nobody_listens,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }


def test_reads_and_key_creation_still_work_while_the_cache_is_down(bob, app, cache_down):
    client = client_for(bob)
    assert client.get("/api/v1/applications/").status_code == 200
    created = client.post(f"/api/v1/applications/{app.pk}/keys/", {"name": "during the outage"})
    assert created.status_code == 201 and created.json()["secret"]
    assert ApiKey.objects.filter(application=app).count() == 1
