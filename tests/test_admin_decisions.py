"""Operators approve, reject and run the lifecycle through the real Django admin pages."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from portal.models import AuditEvent, Subscription, SubscriptionState, VersionState
from portal.services import keys, subscriptions
from portal.services.config_signal import current_config_version

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIPTIONS = reverse("admin:portal_subscription_changelist")
VERSIONS = reverse("admin:portal_apiversion_changelist")


@pytest.fixture
def admin_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def pending(app, api, gold_plan, bob):
    return subscriptions.request_subscription(app, api, gold_plan, actor=bob)[0]


def run_action(client, url, action, pk, **form):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(pk)], **form}
    return client.post(url, data, follow=True)


def test_approve_action_asks_for_a_reason_first(admin_client, pending):
    response = run_action(admin_client, SUBSCRIPTIONS, "approve", pending.pk)
    assert response.status_code == 200
    assert b'name="reason"' in response.content and b"Approve subscriptions" in response.content
    pending.refresh_from_db()
    assert pending.state == SubscriptionState.PENDING


def test_approving_through_admin_records_decision_audit_and_config_bump(admin_client, pending, staff, mailoutbox):
    mailoutbox.clear()  # the request's own mail, to those who decide (tests/analytics/test_alerts.py)
    before = current_config_version()
    response = run_action(admin_client, SUBSCRIPTIONS, "approve", pending.pk, apply="1", reason="Verified customer")
    assert response.status_code == 200 and b"1 done" in response.content
    pending.refresh_from_db()
    assert (pending.state, pending.decided_by, pending.reason) == (
        SubscriptionState.APPROVED,
        staff,
        "Verified customer",
    )
    assert AuditEvent.objects.filter(action="subscription.approved", actor=staff).count() == 1
    assert current_config_version() == before + 1
    assert len(mailoutbox) == 1


def test_rejecting_through_admin_requires_a_reason(admin_client, pending):
    response = run_action(admin_client, SUBSCRIPTIONS, "reject", pending.pk, apply="1", reason="")
    assert b"A reason is required" in response.content
    pending.refresh_from_db()
    assert pending.state == SubscriptionState.PENDING

    run_action(admin_client, SUBSCRIPTIONS, "reject", pending.pk, apply="1", reason="Use the free plan")
    pending.refresh_from_db()
    assert (pending.state, pending.reason) == (SubscriptionState.REJECTED, "Use the free plan")
    assert AuditEvent.objects.get(action="subscription.rejected").details["reason"] == "Use the free plan"


def test_approving_a_rejected_subscription_shows_an_error_not_a_500(admin_client, pending, staff):
    subscriptions.reject_subscription(pending, actor=staff, reason="no")
    response = run_action(admin_client, SUBSCRIPTIONS, "approve", pending.pk, apply="1", reason="")
    assert response.status_code == 200
    assert b"only a pending one can be approved" in response.content
    assert Subscription.objects.get(pk=pending.pk).state == SubscriptionState.REJECTED


def test_subscription_list_filters_by_state(admin_client, pending, app, api, free_plan, bob):
    response = admin_client.get(SUBSCRIPTIONS, {"state__exact": "pending"})
    assert response.status_code == 200
    assert list(response.context["cl"].queryset) == [pending]


def test_lifecycle_actions_in_admin(admin_client, draft_version):
    run_action(admin_client, VERSIONS, "publish", draft_version.pk)
    draft_version.refresh_from_db()
    assert draft_version.state == VersionState.PUBLISHED

    run_action(admin_client, VERSIONS, "deprecate", draft_version.pk, apply="1", sunset_at="2099-01-01 00:00")
    draft_version.refresh_from_db()
    assert draft_version.state == VersionState.DEPRECATED and draft_version.sunset_at.year == 2099

    run_action(admin_client, VERSIONS, "retire", draft_version.pk, apply="1", reason="gone")
    draft_version.refresh_from_db()
    assert draft_version.state == VersionState.RETIRED
    response = run_action(admin_client, VERSIONS, "publish", draft_version.pk)
    assert b"cannot become published" in response.content


def test_admin_shows_keys_by_prefix_only(admin_client, app, bob):
    key, secret = keys.create_api_key(app, actor=bob)
    response = admin_client.get(reverse("admin:portal_apikey_change", args=[key.pk]))
    assert response.status_code == 200
    assert key.prefix.encode() in response.content
    assert key.secret_hash.encode() not in response.content
    assert secret.encode() not in response.content


def test_audit_log_is_read_only(admin_client, pending):
    event = AuditEvent.objects.first()
    assert admin_client.get(reverse("admin:portal_auditevent_add")).status_code == 403
    response = admin_client.post(reverse("admin:portal_auditevent_change", args=[event.pk]), {"action": "x"})
    assert response.status_code == 403
    assert (
        admin_client.post(reverse("admin:portal_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )


def test_non_staff_cannot_open_the_admin(client, alice, pending):
    client.force_login(alice)
    response = client.get(SUBSCRIPTIONS)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
