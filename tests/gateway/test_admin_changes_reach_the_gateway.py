"""Changes an operator makes in the Django admin reach the gateway at once, like the same
change made through the portal: the admin calls the services, which publish the config
change on commit. A key deleted in the admin used to keep working until the gateway's
periodic full reload."""

import time

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from portal.models import ApiKey, AuditAction, AuditEvent
from portal.services.config_signal import current_config_version

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


def _operator() -> Client:
    users = get_user_model()
    operator = users.objects.filter(username="gw-operator").first() or users.objects.create_user(
        "gw-operator", is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(operator)
    return client


def _refused_everywhere_within_a_second(gateway, config, started: float) -> list[int]:
    new_version = current_config_version()
    fresh_workers: set[int] = set()
    while len(fresh_workers) < 2 and time.monotonic() - started < 1.0:
        ready = requests.get(f"{gateway.url}/readyz", timeout=1).json()
        if ready["config_version"] >= new_version:
            fresh_workers.add(ready["pid"])
    assert len(fresh_workers) == 2, "both workers must load the change within 1 s"
    return [
        requests.get(f"{gateway.url}{config.base_path}/echo", headers={"X-API-Key": config.key}, timeout=2).status_code
        for _ in range(8)
    ]


def test_a_key_deleted_in_the_admin_is_refused_by_the_gateway_within_one_second(gateway, configure, upstream_a):
    config = configure([upstream_a])
    assert gateway.get(f"{config.base_path}/echo", config.key).status_code == 200
    key = ApiKey.objects.get(prefix=config.key_prefix)
    before = current_config_version()
    client = _operator()

    response = client.post(reverse("admin:portal_apikey_delete", args=[key.pk]), {"post": "yes"})
    deleted_at = time.monotonic()

    assert response.status_code == 302 and not ApiKey.objects.filter(pk=key.pk).exists()
    assert current_config_version() > before  # published on commit, not left to the periodic reload
    statuses = _refused_everywhere_within_a_second(gateway, config, deleted_at)
    assert time.monotonic() - deleted_at < 1.0 and statuses == [401] * 8, statuses
    event = AuditEvent.objects.get(action=AuditAction.KEY_DELETED, object_id=str(key.pk))
    assert event.actor.username == "gw-operator" and event.details["prefix"] == config.key_prefix


def test_keys_deleted_with_the_admins_bulk_action_are_refused_within_one_second(gateway, configure, upstream_a):
    config = configure([upstream_a])
    key = ApiKey.objects.get(prefix=config.key_prefix)
    client = _operator()

    response = client.post(
        reverse("admin:portal_apikey_changelist"),
        {"action": "delete_selected", "_selected_action": [key.pk], "post": "yes"},
    )
    deleted_at = time.monotonic()

    assert response.status_code == 302 and not ApiKey.objects.filter(pk=key.pk).exists()
    statuses = _refused_everywhere_within_a_second(gateway, config, deleted_at)
    assert time.monotonic() - deleted_at < 1.0 and statuses == [401] * 8, statuses
    assert AuditEvent.objects.filter(action=AuditAction.KEY_DELETED, object_id=str(key.pk)).count() == 1
