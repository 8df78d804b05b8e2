"""Subscriptions over the REST API: request (idempotent), see state and reasons, cancel."""

import pytest

from portal.models import Subscription, SubscriptionState, Visibility
from portal.services import subscriptions
from tests.api.conftest import assert_error, client_for
from tests.portal.catalog_builders import make_api, make_plan

pytestmark = pytest.mark.django_db


def subscribe(client, app, api_slug, plan):
    return client.post(
        "/api/v1/subscriptions/", {"application": app.pk, "api": api_slug, "plan": plan.pk}, format="json"
    )


def test_an_auto_approved_plan_is_active_at_once_and_asking_again_returns_it(bob, app, free_plan):
    client = client_for(bob)
    first = subscribe(client, app, "weather", free_plan)
    assert first.status_code == 201 and first.json()["state"] == "approved"
    again = subscribe(client, app, "weather", free_plan)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert Subscription.objects.count() == 1


def test_a_plan_needing_approval_waits_as_pending_and_stays_one_request(bob, app, gold_plan):
    client = client_for(bob)
    first = subscribe(client, app, "weather", gold_plan)
    assert first.status_code == 201 and first.json()["state"] == "pending"
    assert subscribe(client, app, "weather", gold_plan).json()["id"] == first.json()["id"]
    listed = client.get("/api/v1/subscriptions/", {"state": "pending"}).json()["results"]
    assert [(s["id"], s["plan_name"], s["state"]) for s in listed] == [(first.json()["id"], "Gold", "pending")]


def test_a_rejection_reason_is_shown_to_the_developer(bob, app, gold_plan, staff, api):
    pending, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    subscriptions.reject_subscription(pending, actor=staff, reason="Gold is for paying customers.")
    shown = client_for(bob).get(f"/api/v1/subscriptions/{pending.pk}/").json()
    assert (shown["state"], shown["reason"]) == ("rejected", "Gold is for paying customers.")


def test_subscriptions_filter_by_application_and_state(bob, app, free_plan):
    subscribe(client_for(bob), app, "weather", free_plan)
    client = client_for(bob)
    assert len(client.get("/api/v1/subscriptions/", {"application": app.pk}).json()["results"]) == 1
    assert client.get("/api/v1/subscriptions/", {"application": app.pk + 1}).json()["results"] == []
    assert client.get("/api/v1/subscriptions/", {"state": "rejected"}).json()["results"] == []


def test_a_plan_of_another_api_or_an_unknown_api_is_404(bob, app, free_plan, publisher, staff):
    other = make_api(publisher, staff, "other")
    other_plan = make_plan(other, "Other free")
    client = client_for(bob)
    assert_error(subscribe(client, app, "weather", other_plan), 404, "not_found")
    assert_error(subscribe(client, app, "nope", free_plan), 404, "not_found")
    assert not Subscription.objects.exists()


def test_a_private_api_of_another_tenant_cannot_be_subscribed(bob, app, globex, staff):
    private = make_api(globex, staff, "secret-sauce", visibility=Visibility.PRIVATE)
    plan = make_plan(private, "Free")
    assert_error(subscribe(client_for(bob), app, "secret-sauce", plan), 404, "not_found")


def test_an_inactive_plan_is_refused_with_the_reason(bob, app, free_plan):
    free_plan.is_active = False
    free_plan.save()
    error = assert_error(subscribe(client_for(bob), app, "weather", free_plan), 400, "invalid_input")
    assert "Free" in error["message"]


def test_a_team_admin_cancels_an_approved_subscription_a_developer_cannot(bob, alice, app, free_plan, api):
    sub, _ = subscriptions.request_subscription(app, api, free_plan, actor=bob)
    assert_error(client_for(bob).post(f"/api/v1/subscriptions/{sub.pk}/cancel/"), 403, "permission_denied")
    cancelled = client_for(alice).post(
        f"/api/v1/subscriptions/{sub.pk}/cancel/", {"reason": "Moving off"}, format="json"
    )
    assert (cancelled.json()["state"], cancelled.json()["reason"]) == ("revoked", "Moving off")
    assert Subscription.objects.get(pk=sub.pk).state == SubscriptionState.REVOKED
    assert_error(client_for(alice).post(f"/api/v1/subscriptions/{sub.pk}/cancel/"), 409, "illegal_transition")
