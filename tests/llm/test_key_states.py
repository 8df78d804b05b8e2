"""Issue 11: provider key states the gateway learned reach ``ProviderKey.state``.

The reports are written by the real ``Router`` into the session's real Redis, as a gateway
worker writes them, and read back by the beat task ``llm.sync_key_states``.
"""

import asyncio
import json
import os
import time
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from django.conf import settings
from django.utils import timezone

from llm import canonical, services, tasks
from llm.models import KeyState, ProviderKey
from llm.router import KEY_STATE_HASH, Router
from portal.models import AuditEvent
from portal.services.config_signal import current_config_version
from tests.llm import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_reports(redis_client):
    redis_client.delete(KEY_STATE_HASH)  # other tests' gateways report keys with the same ids
    yield
    redis_client.delete(KEY_STATE_HASH)


@pytest.fixture
def pool(staff):
    provider = f.provider(staff)
    first = services.add_key(provider, actor=staff, secret="sk-first-0123456789", label="first")
    second = services.add_key(provider, actor=staff, secret="sk-second-0123456789", label="second")
    return first, second


def gateway_reports(*outcomes: tuple[ProviderKey, str, float | None]) -> None:
    """What a gateway worker does after these attempts: report them through its router."""

    async def scenario():
        client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
        router = Router(redis=client)
        for key, kind, retry_after in outcomes:
            wire_key = canonical.ProviderKey(key.pk, "sk-test")
            target = canonical.ModelTarget(
                model_id=1, provider_id=key.provider_id, provider_kind="openai", base_url=f.MOCK, upstream_model="m"
            )
            router.report(target, wire_key, canonical.ProviderError(kind, kind, retry_after=retry_after))
        await router.flush_reports()
        await client.aclose()

    asyncio.run(scenario())


def test_beat_runs_the_sync():
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "llm.sync_key_states")
    assert entry["schedule"] <= 60


def test_a_key_the_gateway_found_refused_is_disabled_once(pool, redis_client, django_capture_on_commit_callbacks):
    refused, healthy = pool
    version = current_config_version()
    gateway_reports((refused, "authentication", None))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sync_key_states() == 1
    refused.refresh_from_db()
    healthy.refresh_from_db()
    assert (refused.state, healthy.state) == (KeyState.DISABLED, KeyState.ENABLED)
    event = AuditEvent.objects.get(action="llm.key.disabled", object_id=str(refused.pk))
    assert event.actor is None and event.details["reason"] == "authentication"
    assert event.details["previous_state"] == "enabled"
    assert current_config_version() > version  # every worker drops the key at once
    assert not redis_client.hgetall(KEY_STATE_HASH)  # consumed

    # The same failure reported again by another worker: nothing changes, nothing is audited.
    gateway_reports((refused, "permission", None))
    assert tasks.sync_key_states() == 0
    assert AuditEvent.objects.filter(action="llm.key.disabled").count() == 1


def test_a_resting_key_shows_its_rest_and_is_enabled_when_it_is_over(pool):
    resting, _ = pool
    before = time.time()
    gateway_reports((resting, "rate_limited", 120))
    assert tasks.sync_key_states() == 1
    resting.refresh_from_db()
    assert resting.state == KeyState.RATE_LIMITED
    assert before + 119 < resting.state_until.timestamp() < time.time() + 121
    assert not AuditEvent.objects.filter(object_type="llm.ProviderKey", action__startswith="llm.key.rate").exists()
    assert tasks.sync_key_states() == 0  # nothing new: no write

    ProviderKey.objects.filter(pk=resting.pk).update(state_until=timezone.now() - timedelta(seconds=1))
    assert tasks.sync_key_states() == 1
    resting.refresh_from_db()
    assert (resting.state, resting.state_until) == (KeyState.ENABLED, None)


def test_staff_enabling_a_key_after_the_failure_wins(pool, staff):
    key, _ = pool
    gateway_reports((key, "authentication", None))
    time.sleep(0.01)
    services.disable_key(key, actor=staff, reason="checking")
    services.enable_key(key, actor=staff)  # staff fixed the credential after the failure
    assert tasks.sync_key_states() == 0
    key.refresh_from_db()
    assert key.state == KeyState.ENABLED


def test_a_rest_does_not_undo_a_disabled_or_expired_key(pool, staff):
    disabled, expired = pool
    services.disable_key(disabled, actor=staff)
    ProviderKey.objects.filter(pk=expired.pk).update(state=KeyState.EXPIRED)
    time.sleep(0.01)
    gateway_reports((disabled, "rate_limited", 60), (expired, "authentication", None))
    assert tasks.sync_key_states() == 0
    assert dict(ProviderKey.objects.values_list("pk", "state")) == {
        disabled.pk: KeyState.DISABLED,
        expired.pk: KeyState.EXPIRED,
    }


def test_unusable_reports_are_dropped_without_failing_the_others(pool, redis_client):
    key, _ = pool
    gateway_reports((key, "authentication", None))
    redis_client.hset(
        KEY_STATE_HASH,
        mapping={
            "not-an-id": json.dumps({"state": "disabled", "at": time.time()}),
            "424242": json.dumps({"state": "disabled", "at": time.time()}),  # a deleted key
            "7": "{not json",
            "8": json.dumps({"state": "rate_limited", "at": time.time()}),  # no until
            "9": json.dumps({"state": "exploded", "at": time.time()}),
            "10": json.dumps({"state": "rate_limited", "until": 1e300, "at": time.time()}),
        },
    )
    assert tasks.sync_key_states() == 1
    key.refresh_from_db()
    assert key.state == KeyState.DISABLED
    assert not redis_client.hgetall(KEY_STATE_HASH)
