"""E-mails at 80 % and 100 % of an LLM spend budget, once per period, to the owners of the
tenant concerned. Spend is put in the session's real Redis by the gateway's own budget code
(``llm.budgets.Budgets``: reserve, then reconcile), exactly as calls would."""

import asyncio
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.core import mail
from django.core.management import call_command

from llm import services
from llm.budget_alerts import policy_of, send_budget_alerts
from llm.budgets import KEY_PREFIX, Budgets
from llm.models import BudgetAlert
from llm.tasks import send_budget_alerts as celery_task
from portal.embedded_redis import free_port
from portal.services import keys as api_keys

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 15, 12, 0, tzinfo=UTC)
NEXT_MONTH = datetime(2027, 4, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_budget_counters(redis_client):
    """Budget counters are keyed by scope and database id; ids repeat between tests."""
    for key in redis_client.scan_iter(match=f"{KEY_PREFIX}*", count=1000):
        redis_client.delete(key)


@pytest.fixture
def sync_redis():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def spend(budget, usd: str, at: datetime, *, actual: str | None = None) -> None:
    """Reserve ``usd`` against the budget as a call would, then reconcile to ``actual``."""

    async def call():
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            budgets = Budgets(client, on_redis_failure="closed")
            reservation = await budgets.reserve([policy_of(budget)], 100, Decimal(usd), now=at.timestamp())
            assert not hasattr(reservation, "kind"), reservation  # admitted, not refused
            await budgets.reconcile(reservation, 100, Decimal(actual or usd), now=at.timestamp())
        finally:
            await client.aclose()

    asyncio.run(call())


def run(sync_redis, at: datetime, capture) -> list:
    with capture(execute=True):
        return send_budget_alerts(redis_client=sync_redis, now=at)


@pytest.fixture
def acme_budget(staff, acme):
    return services.create_budget(actor=staff, subject=acme, spend_limit_usd=Decimal("10"))


def test_below_80_percent_nobody_is_mailed(acme_budget, sync_redis, django_capture_on_commit_callbacks):
    spend(acme_budget, "7.99", NOW)
    assert run(sync_redis, NOW, django_capture_on_commit_callbacks) == []
    assert mail.outbox == [] and not BudgetAlert.objects.exists()


def test_80_and_100_percent_each_mail_the_tenants_owners_once_per_period(
    acme_budget, sync_redis, django_capture_on_commit_callbacks
):
    spend(acme_budget, "8.00", NOW)
    sent = run(sync_redis, NOW, django_capture_on_commit_callbacks)
    assert [(a.threshold, a.spend_usd, a.recipients) for a in sent] == [(80, Decimal("8"), 1)]
    assert len(mail.outbox) == 1
    first = mail.outbox[0]
    assert first.to == ["alice@example.com"]  # the owner; not bob (developer) nor vera (viewer)
    assert "80 %" in first.subject and "$8.00 of its $10.00 monthly budget" in first.body

    assert run(sync_redis, NOW, django_capture_on_commit_callbacks) == []  # once per period
    spend(acme_budget, "2.00", NOW)
    sent = run(sync_redis, NOW, django_capture_on_commit_callbacks)
    assert [a.threshold for a in sent] == [100]
    assert "100 %" in mail.outbox[1].subject and "refused until 2027-04-01 00:00 UTC" in mail.outbox[1].body
    assert run(sync_redis, NOW, django_capture_on_commit_callbacks) == []
    assert len(mail.outbox) == 2

    spend(acme_budget, "9.00", NEXT_MONTH)  # a new period: its own counter, its own alerts
    assert [a.threshold for a in run(sync_redis, NEXT_MONTH, django_capture_on_commit_callbacks)] == [80]
    assert len(mail.outbox) == 3
    starts = sorted({a.period_start for a in BudgetAlert.objects.all()})
    assert starts == [datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC)]


def test_a_jump_past_100_percent_sends_one_mail_and_marks_both_thresholds(
    acme_budget, sync_redis, django_capture_on_commit_callbacks
):
    spend(acme_budget, "1.00", NOW, actual="12.00")  # real usage above the estimate
    sent = run(sync_redis, NOW, django_capture_on_commit_callbacks)
    assert [(a.threshold, a.spend_usd) for a in sent] == [(100, Decimal("12"))]
    assert len(mail.outbox) == 1
    assert set(BudgetAlert.objects.values_list("threshold", flat=True)) == {80, 100}
    assert run(sync_redis, NOW, django_capture_on_commit_callbacks) == []


def test_key_and_application_budgets_mail_the_owners_of_their_tenant(
    staff, app, alice, globex_app, sync_redis, django_capture_on_commit_callbacks
):
    key, _secret = api_keys.create_api_key(app, actor=alice, name="k")
    per_key = services.create_budget(actor=staff, subject=key, spend_limit_usd=Decimal("1"), period="daily")
    per_app = services.create_budget(actor=staff, subject=globex_app, spend_limit_usd=Decimal("1"), period="weekly")
    spend(per_key, "1", NOW)
    spend(per_app, "0.9", NOW)
    sent = run(sync_redis, NOW, django_capture_on_commit_callbacks)
    assert {(a.budget_id, a.threshold) for a in sent} == {(per_key.pk, 100), (per_app.pk, 80)}
    recipients = {tuple(m.to) for m in mail.outbox}
    assert recipients == {("alice@example.com",), ("charlie@example.com",)}
    daily = next(m for m in mail.outbox if m.to == ["alice@example.com"])
    assert "daily" in daily.body and "2027-03-16 00:00" in daily.body
    weekly_start = BudgetAlert.objects.get(budget=per_app).period_start
    assert weekly_start == datetime(2027, 3, 15, tzinfo=UTC)  # ISO week: Monday 00:00 UTC


def test_a_row_written_by_another_run_means_no_second_mail(acme_budget, sync_redis, django_capture_on_commit_callbacks):
    BudgetAlert.objects.create(
        budget=acme_budget, period_start=datetime(2027, 3, 1, tzinfo=UTC), threshold=80, spend_usd=Decimal(8)
    )
    spend(acme_budget, "8.50", NOW)
    assert run(sync_redis, NOW, django_capture_on_commit_callbacks) == []
    assert mail.outbox == []


def test_budgets_without_a_spend_limit_never_alert(staff, acme, sync_redis, django_capture_on_commit_callbacks):
    services.create_budget(actor=staff, subject=acme, tokens_per_minute=100)
    assert run(sync_redis, NOW, django_capture_on_commit_callbacks) == []


def test_a_tenant_without_owner_addresses_is_recorded_and_not_retried(
    acme_budget, alice, sync_redis, django_capture_on_commit_callbacks
):
    alice.email = ""
    alice.save()
    spend(acme_budget, "9", NOW)
    assert [a.recipients for a in run(sync_redis, NOW, django_capture_on_commit_callbacks)] == [0]
    assert mail.outbox == [] and run(sync_redis, NOW, django_capture_on_commit_callbacks) == []


def test_the_setting_turns_budget_mails_off(acme_budget, sync_redis, settings, django_capture_on_commit_callbacks):
    settings.PORTICO_NOTIFY_BUDGET_ALERTS = False
    spend(acme_budget, "10", NOW)
    assert run(sync_redis, NOW, django_capture_on_commit_callbacks) == []
    assert mail.outbox == [] and not BudgetAlert.objects.exists()


def test_with_redis_unreachable_nothing_is_sent_or_recorded_and_nothing_raises(
    acme_budget, django_capture_on_commit_callbacks
):
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    assert run(dead, NOW, django_capture_on_commit_callbacks) == []
    assert mail.outbox == [] and not BudgetAlert.objects.exists()


def test_a_broken_mail_server_does_not_fail_the_run(
    acme_budget, sync_redis, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 1
    spend(acme_budget, "9", NOW)
    assert [a.threshold for a in run(sync_redis, NOW, django_capture_on_commit_callbacks)] == [80]
    assert BudgetAlert.objects.count() == 1  # once means once: no retry every minute


def test_the_celery_task_and_the_command_run_against_the_configured_redis(
    acme_budget, django_capture_on_commit_callbacks
):
    spend(acme_budget, "9", datetime.now(UTC))
    with django_capture_on_commit_callbacks(execute=True):
        assert celery_task() == 1
    out = io.StringIO()
    call_command("send_budget_alerts", stdout=out)
    assert "0 budget alert(s) sent." in out.getvalue()
    assert celery_task.name == "llm.send_budget_alerts"
    assert settings.CELERY_BEAT_SCHEDULE["send-budget-alerts"] == {"task": "llm.send_budget_alerts", "schedule": 60.0}
    assert len(mail.outbox) == 1
