"""With the cache (Redis) unreachable, the API's throttle and key-creation limit fail open:
people keep working, nothing answers 500."""

import pytest

from portal.models import ApiKey
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db


def test_reads_and_key_creation_still_work_while_the_cache_is_down(bob, app, cache_down):
    client = client_for(bob)
    assert client.get("/api/v1/applications/").status_code == 200
    created = client.post(f"/api/v1/applications/{app.pk}/keys/", {"name": "during the outage"})
    assert created.status_code == 201 and created.json()["secret"]
    assert ApiKey.objects.filter(application=app).count() == 1
