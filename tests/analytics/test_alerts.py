"""Alerts: a rule fires from the minute rollups, notifies once (e-mail to the tenant's owners
and a signed webhook to a real HTTP receiver on loopback, which checks the signature with
the rule's secret), stays silent while firing, resolves and notifies that; failing receivers
are retried with backoff and given up; rules stay inside their tenant; bad webhook URLs are
refused. Also: a subscription request that waits for approval tells those who decide it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.core.management import call_command

from analytics import tasks
from analytics.alerts import (
    RuleSpec,
    create_rule,
    delete_rule,
    evaluate_alerts,
    events_for,
    get_rule,
    rules_for,
    update_rule,
)
from analytics.models import AlertEvent, AlertState, WebhookDelivery
from analytics.rollups import roll_up_minutes
from analytics.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, deliver_webhooks, verify
from portal.models import Membership, Role, Subscription
from portal.services.errors import InvalidInput, NotFound, PermissionDenied
from portal.services.subscriptions import request_subscription
from tests.analytics.factories import call, store
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

T0 = datetime(2027, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def alert_settings(settings):
    settings.PORTICO_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.PORTICO_ALERT_DELAY_SECONDS = 0  # the tests roll every minute up before judging
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


class Receiver:
    """A webhook receiver on 127.0.0.1: answers each POST with the next of ``statuses`` (the
    last one repeated) and records what came, and whether its signature holds for ``secret``."""

    def __init__(self) -> None:
        self.secret = ""
        self.statuses: list[int] = [200]
        self.delay = 0.0
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signature = self.headers.get(SIGNATURE_HEADER, "")
                receiver.received.append(
                    {
                        "path": self.path,
                        "event_id": self.headers.get(EVENT_ID_HEADER),
                        "signed": verify(receiver.secret, signature, body),
                        "content_type": self.headers.get("Content-Type"),
                        "body": json.loads(body),
                    }
                )
                status = receiver.statuses[min(len(receiver.received), len(receiver.statuses)) - 1]
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/portico"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def traffic(app, api, *, start: datetime, minutes: int, per_minute: int = 20, failing: int = 0, latency=10.0):
    """``per_minute`` calls of ``app`` to ``api`` in each of ``minutes`` minutes from
    ``start``, ``failing`` of them answered 502."""
    rows = []
    for minute in range(minutes):
        at = start + timedelta(minutes=minute)
        for i in range(per_minute):
            rows.append(
                call(
                    at + timedelta(seconds=i),
                    status=502 if i < failing else 200,
                    latency_ms=latency,
                    api_id=api.pk,
                    tenant_id=app.tenant_id,
                    application_id=app.pk,
                )
            )
    store(rows)


def spike_then_calm(app, api):
    """12:00-12:10 healthy, 12:10-12:15 half the calls fail, 12:15-12:25 healthy again."""
    traffic(app, api, start=T0, minutes=10)
    traffic(app, api, start=T0 + timedelta(minutes=10), minutes=5, failing=10)
    traffic(app, api, start=T0 + timedelta(minutes=15), minutes=10)
    roll_up_minutes(now=T0 + timedelta(minutes=30))


def evaluate(at: datetime, capture) -> list:
    with capture(execute=True):
        return evaluate_alerts(at)


def error_rule(actor, tenant, **changes):
    fields = {"name": "Errors", "metric": "error_rate", "threshold": 20, "window_minutes": 5, **changes}
    return create_rule(actor, tenant, RuleSpec(**fields))


def test_error_rate_alert_fires_notifies_once_and_resolves(
    alice, acme, api, app, receiver, django_capture_on_commit_callbacks
):
    spike_then_calm(app, api)
    rule, secret = error_rule(alice, acme, webhook_url=receiver.url)
    receiver.secret = secret

    assert evaluate(T0 + timedelta(minutes=10), django_capture_on_commit_callbacks) == []  # 0 % before the spike
    assert mail.outbox == []

    fired = evaluate(T0 + timedelta(minutes=15), django_capture_on_commit_callbacks)  # 12:10-12:15: 50 %
    assert [(c.state, c.value) for c in fired] == [("firing", 50.0)]
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]
    assert "Alert firing: Errors (Acme)" in mail.outbox[0].subject
    assert "50.0 %" in mail.outbox[0].body
    assert deliver_webhooks(now=T0 + timedelta(minutes=15)) == {"delivered": 1, "failed": 0, "given_up": 0}
    assert len(receiver.received) == 1
    firing = receiver.received[0]
    assert firing["signed"] and firing["path"] == "/hooks/portico"
    assert firing["content_type"] == "application/json"
    assert firing["body"]["state"] == "firing" and firing["body"]["value"] == 50.0
    assert firing["body"]["threshold"] == 20 and firing["body"]["rule"]["id"] == rule.pk
    assert firing["body"]["tenant"] == {"id": acme.pk, "name": "Acme"}

    # Still firing a minute later (12:11-12:16: 40 %): nobody hears of it again.
    assert evaluate(T0 + timedelta(minutes=16), django_capture_on_commit_callbacks) == []
    assert deliver_webhooks(now=T0 + timedelta(minutes=16))["delivered"] == 0
    assert len(mail.outbox) == 1 and len(receiver.received) == 1
    event = AlertEvent.objects.get(rule=rule)
    assert event.state == AlertState.FIRING and event.peak_value == 50.0

    resolved = evaluate(T0 + timedelta(minutes=20), django_capture_on_commit_callbacks)  # 12:15-12:20: 0 %
    assert [(c.state, c.value) for c in resolved] == [("resolved", 0.0)]
    assert len(mail.outbox) == 2 and "Alert resolved: Errors (Acme)" in mail.outbox[1].subject
    assert deliver_webhooks(now=T0 + timedelta(minutes=20))["delivered"] == 1
    assert [r["body"]["state"] for r in receiver.received] == ["firing", "resolved"]
    assert all(r["signed"] for r in receiver.received)
    assert receiver.received[1]["event_id"] != receiver.received[0]["event_id"]
    assert receiver.received[1]["body"]["resolved_at"] == (T0 + timedelta(minutes=20)).isoformat()

    assert evaluate(T0 + timedelta(minutes=21), django_capture_on_commit_callbacks) == []
    event.refresh_from_db()
    assert event.state == AlertState.RESOLVED and event.resolved_at == T0 + timedelta(minutes=20)
    assert [h["state"] for h in event.history] == ["firing", "resolved"]
    assert list(events_for(alice, rule.pk)) == [event]
    assert len(mail.outbox) == 2 and len(receiver.received) == 2


def test_a_signature_made_with_another_secret_does_not_verify(
    alice, acme, api, app, receiver, django_capture_on_commit_callbacks
):
    spike_then_calm(app, api)
    rule, secret = error_rule(alice, acme, webhook_url=receiver.url)
    receiver.secret = secret.replace(secret[-4:], "AAAA") if not secret.endswith("AAAA") else secret + "x"
    evaluate(T0 + timedelta(minutes=15), django_capture_on_commit_callbacks)
    deliver_webhooks(now=T0 + timedelta(minutes=15))
    assert [r["signed"] for r in receiver.received] == [False]


def test_failing_receiver_is_retried_with_backoff_then_given_up(
    alice, acme, api, app, receiver, django_capture_on_commit_callbacks
):
    spike_then_calm(app, api)
    rule, receiver.secret = error_rule(alice, acme, webhook_url=receiver.url, notify_email=False)
    receiver.statuses = [500]
    fired_at = T0 + timedelta(minutes=15)
    evaluate(fired_at, django_capture_on_commit_callbacks)
    assert mail.outbox == []  # the rule asked for no e-mail

    delivery = WebhookDelivery.objects.get()
    tries = []
    for minute in range(0, 40):  # beat every 30 s, for 40 minutes
        for half in (0, 30):
            at = fired_at + timedelta(minutes=minute, seconds=half)
            before = len(receiver.received)
            deliver_webhooks(now=at)
            if len(receiver.received) > before:
                tries.append((at - fired_at).total_seconds() / 60)
    assert tries == [0, 1, 3, 7, 15, 31]  # waits of 1, 2, 4, 8, 16 minutes; six tries in all
    delivery.refresh_from_db()
    assert delivery.attempts == 6 and delivery.last_status == 500 and delivery.last_error == "HTTP 500"
    assert delivery.given_up_at is not None and delivery.delivered_at is None and delivery.next_attempt_at is None
    assert {r["event_id"] for r in receiver.received} == {delivery.delivery_id}  # one id: receivers dedupe
    assert len({json.dumps(r["body"]) for r in receiver.received}) == 1 and all(r["signed"] for r in receiver.received)


def test_receiver_that_recovers_gets_the_delivery_once(
    alice, acme, api, app, receiver, django_capture_on_commit_callbacks
):
    spike_then_calm(app, api)
    _rule, receiver.secret = error_rule(alice, acme, webhook_url=receiver.url)
    receiver.statuses = [503, 200]
    fired_at = T0 + timedelta(minutes=15)
    evaluate(fired_at, django_capture_on_commit_callbacks)
    assert deliver_webhooks(now=fired_at) == {"delivered": 0, "failed": 1, "given_up": 0}
    assert deliver_webhooks(now=fired_at + timedelta(seconds=30))["failed"] == 0  # not due yet
    assert deliver_webhooks(now=fired_at + timedelta(minutes=1))["delivered"] == 1
    assert deliver_webhooks(now=fired_at + timedelta(minutes=10)) == {"delivered": 0, "failed": 0, "given_up": 0}
    assert len(receiver.received) == 2
    delivery = WebhookDelivery.objects.get()
    assert delivery.delivered_at == fired_at + timedelta(minutes=1) and delivery.attempts == 2


def test_unreachable_receiver_counts_as_a_failed_try(alice, acme, api, app, django_capture_on_commit_callbacks):
    from portal.embedded_redis import free_port

    spike_then_calm(app, api)
    error_rule(alice, acme, webhook_url=f"http://127.0.0.1:{free_port()}/nobody")
    evaluate(T0 + timedelta(minutes=15), django_capture_on_commit_callbacks)
    assert deliver_webhooks(now=T0 + timedelta(minutes=15))["failed"] == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_status is None and "Connection" in delivery.last_error
    assert delivery.next_attempt_at == T0 + timedelta(minutes=16)


def test_a_receiver_that_does_not_answer_in_5_seconds_is_a_failed_try(
    alice, acme, api, app, receiver, django_capture_on_commit_callbacks
):
    spike_then_calm(app, api)
    _rule, receiver.secret = error_rule(alice, acme, webhook_url=receiver.url)
    receiver.delay = 8.0
    evaluate(T0 + timedelta(minutes=15), django_capture_on_commit_callbacks)
    started = time.monotonic()
    assert deliver_webhooks(now=T0 + timedelta(minutes=15))["failed"] == 1
    assert time.monotonic() - started < 7.5  # gave up waiting at the 5 s timeout, not when the receiver answered
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_status is None and "timed out" in delivery.last_error
    assert delivery.next_attempt_at == T0 + timedelta(minutes=16)


def test_a_rule_sees_only_its_tenants_calls(alice, acme, api, app, globex_app, django_capture_on_commit_callbacks):
    traffic(app, api, start=T0, minutes=10)
    traffic(globex_app, api, start=T0, minutes=10, failing=20)  # Globex fails everything
    roll_up_minutes(now=T0 + timedelta(minutes=20))
    error_rule(alice, acme)
    assert evaluate(T0 + timedelta(minutes=10), django_capture_on_commit_callbacks) == []
    assert mail.outbox == []


def test_platform_rule_sees_every_tenant_and_mails_staff(
    staff, acme, api, app, globex_app, django_capture_on_commit_callbacks
):
    traffic(app, api, start=T0, minutes=10)
    traffic(globex_app, api, start=T0, minutes=10, failing=20)
    roll_up_minutes(now=T0 + timedelta(minutes=20))
    error_rule(staff, None, name="Platform errors")
    fired = evaluate(T0 + timedelta(minutes=10), django_capture_on_commit_callbacks)
    assert [c.value for c in fired] == [50.0]
    assert [m.to for m in mail.outbox] == [["staff@example.com"]]
    assert "(Platform)" in mail.outbox[0].subject


def test_p95_latency_and_traffic_drop_and_spike(alice, acme, api, app, django_capture_on_commit_callbacks):
    traffic(app, api, start=T0, minutes=20, per_minute=20, latency=10.0)
    traffic(app, api, start=T0 + timedelta(minutes=20), minutes=5, per_minute=5, latency=400.0)
    traffic(app, api, start=T0 + timedelta(minutes=25), minutes=5, per_minute=60, latency=10.0)
    roll_up_minutes(now=T0 + timedelta(minutes=40))
    slow, _ = create_rule(alice, acme, RuleSpec("Slow", "p95_latency_ms", 200, 5))
    drop, _ = create_rule(alice, acme, RuleSpec("Quiet", "traffic_drop", 50, 5))
    spike, _ = create_rule(alice, acme, RuleSpec("Busy", "traffic_spike", 100, 5))

    assert evaluate(T0 + timedelta(minutes=20), django_capture_on_commit_callbacks) == []  # steady 20 a minute
    at_25 = {c.rule_id: c for c in evaluate(T0 + timedelta(minutes=25), django_capture_on_commit_callbacks)}
    assert set(at_25) == {slow.pk, drop.pk}
    assert 360 <= at_25[slow.pk].value <= 440  # within the histogram's 10 % buckets
    assert at_25[drop.pk].value == 75.0  # 25 calls against 100 per window before
    at_30 = {c.rule_id: c for c in evaluate(T0 + timedelta(minutes=30), django_capture_on_commit_callbacks)}
    assert {c.rule_id: c.state for c in at_30.values()} == {
        slow.pk: "resolved",
        drop.pk: "resolved",
        spike.pk: "firing",
    }
    # 300 calls against a baseline of (3 * 100 + 25) / 4 = 81.25 per window
    assert at_30[spike.pk].value == pytest.approx((300 - 81.25) / 81.25 * 100)


def test_rules_stay_inside_their_tenant(alice, bob, vera, charlie, globex, staff, acme):
    rule, secret = error_rule(alice, acme)
    assert secret.startswith("whsec_") and len(secret) > 40
    assert list(rules_for(vera, acme)) == [rule]  # any member reads
    assert get_rule(bob, rule.pk) == rule

    with pytest.raises(NotFound):
        rules_for(charlie, acme)
    for action in (
        lambda: get_rule(charlie, rule.pk),
        lambda: update_rule(charlie, rule.pk, RuleSpec("Mine", "error_rate", 1)),
        lambda: delete_rule(charlie, rule.pk),
        lambda: events_for(charlie, rule.pk),
        lambda: error_rule(charlie, acme),
    ):
        with pytest.raises(NotFound):
            action()
    assert list(rules_for(charlie, globex)) == []

    with pytest.raises(PermissionDenied):  # a developer reads rules but does not make them
        error_rule(bob, acme)
    with pytest.raises(PermissionDenied):
        delete_rule(bob, rule.pk)

    for outsider in (alice, charlie):  # the platform's rules are staff's
        with pytest.raises(NotFound):
            error_rule(outsider, None)
        with pytest.raises(NotFound):
            rules_for(outsider, None)
    platform, _ = error_rule(staff, None)
    with pytest.raises(NotFound):
        get_rule(alice, platform.pk)
    assert get_rule(staff, rule.pk) == rule  # staff see every rule

    for bad_id in ("nope", None, 10**30, -1):
        with pytest.raises(NotFound):
            get_rule(alice, bad_id)
    updated = update_rule(alice, rule.pk, RuleSpec("Errors!", "error_rate", 5, 10))
    assert (updated.name, updated.threshold, updated.window_minutes) == ("Errors!", 5.0, 10)
    delete_rule(alice, rule.pk)
    with pytest.raises(NotFound):
        get_rule(alice, rule.pk)


def test_a_tenant_cannot_name_another_tenants_budget_or_private_api(alice, acme, charlie, globex, staff):
    from decimal import Decimal

    from llm import services
    from portal.models import Api

    globex_budget = services.create_budget(actor=staff, subject=globex, spend_limit_usd=Decimal("10"))
    with pytest.raises(InvalidInput):
        create_rule(alice, acme, RuleSpec("Theirs", "budget_use", 80, budget_id=globex_budget.pk))
    private = Api.objects.create(slug="secret", name="Secret", owner=globex, visibility="private")
    with pytest.raises(InvalidInput, match="No such API"):
        create_rule(alice, acme, RuleSpec("Theirs", "error_rate", 5, api_id=private.pk))
    rule, _ = create_rule(charlie, globex, RuleSpec("Ours", "budget_use", 80, budget_id=globex_budget.pk))
    assert rule.budget == globex_budget


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/hook",
        "javascript:alert(1)",
        "http://",
        "http:///path",
        "http://10.1.2.3/hook",  # private
        "http://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
        "http://[::1]:8080/",  # loopback, but only 127.0.0.0/8 is allowed here
        "http://0.0.0.0/",
        "http://127.0.0.1:99999/",
        "http://user:password@127.0.0.1/hook",
        "http://127.0.0.1/a b",
        "http://127.0.0.1/\r\nX-Injected: 1",
        "http://no-such-host.invalid/",
        "http://127.0.0.1/" + "a" * 600,
        "http://127.0.0.1/caf\u00e9",  # non-ASCII: percent-encode it
        ["http://127.0.0.1/"],  # not text at all
        42,
    ],
)
def test_bad_webhook_urls_are_refused(alice, acme, url):
    with pytest.raises(InvalidInput):
        error_rule(alice, acme, webhook_url=url)


def test_loopback_is_refused_unless_allowed(alice, acme, settings):
    settings.PORTICO_WEBHOOK_ALLOWED_NETWORKS = []
    with pytest.raises(InvalidInput, match="loopback"):
        error_rule(alice, acme, webhook_url="http://127.0.0.1:9000/hook")


def test_a_webhook_url_that_turns_bad_is_given_up_not_sent(
    alice, acme, api, app, receiver, settings, django_capture_on_commit_callbacks
):
    spike_then_calm(app, api)
    _rule, receiver.secret = error_rule(alice, acme, webhook_url=receiver.url)
    evaluate(T0 + timedelta(minutes=15), django_capture_on_commit_callbacks)
    settings.PORTICO_WEBHOOK_ALLOWED_NETWORKS = []  # the administrator withdrew the allowance
    for minute in (15, 16, 18, 22, 30, 46):
        deliver_webhooks(now=T0 + timedelta(minutes=minute))
    assert receiver.received == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.given_up_at is not None and "loopback" in delivery.last_error


@pytest.mark.parametrize(
    "changes",
    [
        {"metric": "cpu"},
        {"threshold": "lots"},
        {"threshold": float("nan")},
        {"threshold": -1},
        {"threshold": 101},
        {"threshold": True},
        {"window_minutes": 0},
        {"window_minutes": 1441},
        {"window_minutes": 2.5},
        {"window_minutes": "1e400"},
        {"name": "  "},
        {"name": "x" * 101},
        {"api_id": "abc"},
        {"api_id": 10**30},
        {"budget_id": 1},
        {"notify_email": False},  # and no webhook: nobody would hear
    ],
)
def test_bad_rule_fields_are_refused_with_a_clear_error(alice, acme, changes):
    with pytest.raises(InvalidInput):
        error_rule(alice, acme, **changes)


def test_budget_use_rule_fires_from_the_gateways_spend_counter(
    alice, acme, staff, redis_client, django_capture_on_commit_callbacks
):
    from decimal import Decimal

    from llm import services
    from llm.budget_alerts import policy_of
    from llm.budgets import period_bounds, spend_key, to_micros

    budget = services.create_budget(actor=staff, subject=acme, spend_limit_usd=Decimal("10"))
    rule, _ = create_rule(alice, acme, RuleSpec("Spend", "budget_use", 75, budget_id=budget.pk))
    key = spend_key(policy_of(budget), period_bounds(budget.period, T0)[0])
    redis_client.set(key, to_micros(Decimal("8")), ex=60)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            fired = evaluate_alerts(T0, redis_client=redis_client)
        assert [(c.rule_id, c.state, c.value) for c in fired] == [(rule.pk, "firing", 80.0)]
        assert [m.to for m in mail.outbox] == [["alice@example.com"]]
    finally:
        redis_client.delete(key)


def test_beat_task_and_command_evaluate_and_deliver(alice, acme, api, app, django_capture_on_commit_callbacks):
    error_rule(alice, acme)
    assert tasks.evaluate_alerts() == 0
    assert tasks.deliver_webhooks() == {"delivered": 0, "failed": 0, "given_up": 0}
    from django.conf import settings as django_settings

    schedule = {entry["task"]: entry["schedule"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["analytics.evaluate_alerts"] == 60.0 and schedule["analytics.deliver_webhooks"] == 30.0
    import io

    out = io.StringIO()
    call_command("evaluate_alerts", stdout=out)
    call_command("deliver_webhooks", stdout=out)
    assert "0 alert changes." in out.getvalue() and "0 delivered" in out.getvalue()


# -- subscription requests ---------------------------------------------------------------------


@pytest.fixture
def publisher_team(publisher):
    paula = make_user("paula")
    adam = make_user("adam")
    dev = make_user("dev")
    Membership.objects.create(user=paula, tenant=publisher, role=Role.OWNER)
    Membership.objects.create(user=adam, tenant=publisher, role=Role.ADMIN)
    Membership.objects.create(user=dev, tenant=publisher, role=Role.DEVELOPER)
    return publisher


def test_a_request_awaiting_approval_mails_the_apis_team_and_staff_once(
    bob, app, api, gold_plan, staff, publisher_team, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        subscription, created = request_subscription(app, api, gold_plan, actor=bob)
    assert created and subscription.state == "pending"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["adam@example.com", "paula@example.com", "staff@example.com"]  # not dev, not bob
    assert "Acme App (Acme) asks to use Weather" in message.subject
    assert "Gold plan" in message.body and f"/subscriptions/{subscription.pk}/approve/" in message.body

    with django_capture_on_commit_callbacks(execute=True):  # asking again is the same request
        assert request_subscription(app, api, gold_plan, actor=bob) == (subscription, False)
    assert len(mail.outbox) == 1


def test_an_auto_approved_request_mails_nobody(
    bob, app, api, free_plan, staff, publisher_team, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        subscription, _ = request_subscription(app, api, free_plan, actor=bob)
    assert subscription.state == "approved"
    assert mail.outbox == []


def test_request_mails_can_be_turned_off(
    bob, app, api, gold_plan, staff, publisher_team, settings, django_capture_on_commit_callbacks
):
    settings.PORTICO_NOTIFY_SUBSCRIPTION_REQUESTS = False
    with django_capture_on_commit_callbacks(execute=True):
        request_subscription(app, api, gold_plan, actor=bob)
    assert mail.outbox == []
    assert Subscription.objects.filter(state="pending").count() == 1


def test_an_api_filter_judges_that_apis_calls_only(
    alice, acme, api, app, staff, publisher, django_capture_on_commit_callbacks
):
    from portal.models import Api

    other = Api.objects.create(slug="maps", name="Maps", owner=publisher)
    traffic(app, api, start=T0, minutes=10)
    traffic(app, other, start=T0, minutes=10, failing=20)
    roll_up_minutes(now=T0 + timedelta(minutes=20))
    weather, _ = error_rule(alice, acme, name="Weather errors", api_id=api.pk)
    overall, _ = error_rule(alice, acme, name="All errors")
    fired = evaluate(T0 + timedelta(minutes=10), django_capture_on_commit_callbacks)
    assert [(c.rule_id, c.value) for c in fired] == [(overall.pk, 50.0)]
    assert weather.api == api


def test_switching_a_firing_rule_off_ends_its_episode_silently(
    alice, acme, api, app, django_capture_on_commit_callbacks
):
    spike_then_calm(app, api)
    rule, _ = error_rule(alice, acme)
    evaluate(T0 + timedelta(minutes=15), django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    update_rule(alice, rule.pk, RuleSpec("Errors", "error_rate", 20, 5, enabled=False))
    event = AlertEvent.objects.get(rule=rule)
    assert event.state == AlertState.RESOLVED and event.history[-1]["state"] == "disabled"
    assert evaluate(T0 + timedelta(minutes=16), django_capture_on_commit_callbacks) == []
    assert len(mail.outbox) == 1
