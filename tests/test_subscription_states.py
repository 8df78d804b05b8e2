import pytest

from portal.models import AuditEvent, Subscription, SubscriptionState
from portal.services import subscriptions
from portal.services.config_signal import current_config_version
from portal.services.errors import IllegalTransition, InvalidInput, NotFound, PermissionDenied

pytestmark = pytest.mark.django_db(transaction=True)


def test_auto_approve_plan_is_active_at_once_and_bumps_config(app, api, free_plan, bob):
    before = current_config_version()
    sub, created = subscriptions.request_subscription(app, api, free_plan, actor=bob)
    assert created and sub.state == SubscriptionState.APPROVED
    assert current_config_version() == before + 1
    assert AuditEvent.objects.get(action="subscription.requested").details["auto_approved"] is True


def test_approval_plan_waits_pending_without_config_bump(app, api, gold_plan, bob):
    before = current_config_version()
    sub, created = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    assert created and sub.state == SubscriptionState.PENDING
    assert current_config_version() == before


def test_requesting_twice_returns_the_pending_request(app, api, gold_plan, bob, alice):
    first, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    second, created = subscriptions.request_subscription(app, api, gold_plan, actor=alice)
    assert not created and second.pk == first.pk
    assert Subscription.objects.filter(application=app, api=api).count() == 1


def test_staff_approves_pending_with_reason_audit_and_config_bump(app, api, gold_plan, bob, staff, mailoutbox):
    sub, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    before = current_config_version()
    sub = subscriptions.approve_subscription(sub, actor=staff, reason="Looks good")
    assert sub.state == SubscriptionState.APPROVED
    assert (sub.decided_by, sub.reason) == (staff, "Looks good")
    assert current_config_version() == before + 1
    event = AuditEvent.objects.get(action="subscription.approved")
    assert event.actor == staff and event.details["reason"] == "Looks good" and event.tenant == app.tenant


def test_decision_emails_every_owner_and_the_requester(app, api, gold_plan, bob, alice, staff, mailoutbox):
    sub, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    mailoutbox.clear()  # the request's own mail, to those who decide (tests/analytics/test_alerts.py)
    subscriptions.reject_subscription(sub, actor=staff, reason="Not for production use")
    assert len(mailoutbox) == 1
    assert sorted(mailoutbox[0].to) == sorted([alice.email, bob.email])
    assert "rejected" in mailoutbox[0].subject and "Not for production use" in mailoutbox[0].body


def test_decision_emails_can_be_turned_off(app, api, gold_plan, bob, staff, mailoutbox, settings):
    settings.PORTICO_NOTIFY_SUBSCRIPTION_DECISIONS = False
    sub, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    mailoutbox.clear()  # the request's own mail, to those who decide
    subscriptions.approve_subscription(sub, actor=staff)
    assert mailoutbox == []


def test_reject_needs_a_reason(app, api, gold_plan, bob, staff):
    sub, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    with pytest.raises(InvalidInput, match="reason"):
        subscriptions.reject_subscription(sub, actor=staff, reason="  ")
    sub.refresh_from_db()
    assert sub.state == SubscriptionState.PENDING


def test_a_rejected_subscription_cannot_be_approved(app, api, gold_plan, bob, staff):
    sub, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    subscriptions.reject_subscription(sub, actor=staff, reason="no")
    with pytest.raises(IllegalTransition, match="rejected"):
        subscriptions.approve_subscription(sub, actor=staff)
    with pytest.raises(IllegalTransition):
        subscriptions.revoke_subscription(sub, actor=staff)


def test_after_rejection_a_new_request_can_be_made(app, api, gold_plan, bob, staff):
    sub, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    subscriptions.reject_subscription(sub, actor=staff, reason="no")
    again, created = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    assert created and again.pk != sub.pk and again.state == SubscriptionState.PENDING


def test_approved_can_be_revoked_by_tenant_admin_and_then_not_again(app, api, free_plan, bob, alice):
    sub, _ = subscriptions.request_subscription(app, api, free_plan, actor=bob)
    sub = subscriptions.revoke_subscription(sub, actor=alice, reason="app retired")
    assert sub.state == SubscriptionState.REVOKED
    with pytest.raises(IllegalTransition):
        subscriptions.revoke_subscription(sub, actor=alice)


def test_pending_cannot_be_revoked(app, api, gold_plan, bob, staff):
    sub, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    with pytest.raises(IllegalTransition, match="pending"):
        subscriptions.revoke_subscription(sub, actor=staff)


def test_developer_cannot_revoke_and_non_staff_cannot_decide(app, api, gold_plan, free_plan, bob, alice):
    pending, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    # Alice owns the subscribing team, not the API's: only the API's team (or staff) decides.
    with pytest.raises(NotFound):
        subscriptions.approve_subscription(pending, actor=alice)
    with pytest.raises(NotFound):
        subscriptions.reject_subscription(pending, actor=alice, reason="x")


def test_viewer_cannot_subscribe(app, api, free_plan, vera):
    with pytest.raises(PermissionDenied):
        subscriptions.request_subscription(app, api, free_plan, actor=vera)


def test_outsider_cannot_subscribe_another_tenants_application(app, api, free_plan, charlie, globex):
    with pytest.raises(NotFound):
        subscriptions.request_subscription(app, api, free_plan, actor=charlie)
    assert not Subscription.objects.exists()


def test_plan_of_another_api_is_refused(app, api, free_plan, bob, publisher, staff):
    from portal.models import Api, ApiVersion, Plan, UpstreamTarget
    from portal.services import lifecycle

    other = Api.objects.create(slug="other", name="Other", owner=publisher)
    version = ApiVersion.objects.create(api=other, version="v1", base_path="/other/v1")
    UpstreamTarget.objects.create(version=version, url="http://127.0.0.1:9")
    lifecycle.publish_version(version, actor=staff)
    foreign_plan = Plan.objects.create(api=other, name="Free")
    with pytest.raises(InvalidInput, match="not offered"):
        subscriptions.request_subscription(app, api, foreign_plan, actor=bob)


def test_draft_only_api_is_not_in_the_catalog(app, draft_version, bob):
    from portal.models import Plan

    plan = Plan.objects.create(api=draft_version.api, name="Free")
    with pytest.raises(NotFound):
        subscriptions.request_subscription(app, draft_version.api, plan, actor=bob)
