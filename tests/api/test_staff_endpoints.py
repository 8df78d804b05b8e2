"""Staff endpoints: deciding subscription requests and moving versions through their lifecycle."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from portal.models import ApiVersion, Subscription, SubscriptionState, VersionState
from portal.services import subscriptions
from tests.api.conftest import assert_error, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(app, bob, api, gold_plan):
    return subscriptions.request_subscription(app, api, gold_plan, actor=bob)[0]


def test_staff_sees_every_tenants_pending_requests_with_scope_all(staff, pending, globex_app, charlie, api, gold_plan):
    subscriptions.request_subscription(globex_app, api, gold_plan, actor=charlie)
    admin = client_for(staff)
    assert admin.get("/api/v1/subscriptions/").json()["results"] == []  # staff belongs to no team
    listed = admin.get("/api/v1/subscriptions/", {"scope": "all", "state": "pending"}).json()["results"]
    assert len(listed) == 2


def test_scope_all_means_nothing_for_a_developer(bob, charlie, pending):
    assert client_for(charlie).get("/api/v1/subscriptions/", {"scope": "all"}).json()["results"] == []


def test_staff_approves_with_a_reason_and_the_team_is_told(
    staff, pending, settings, django_capture_on_commit_callbacks
):
    settings.PORTICO_NOTIFY_SUBSCRIPTION_DECISIONS = True
    admin = client_for(staff)
    with django_capture_on_commit_callbacks(execute=True):
        approved = admin.post(f"/api/v1/subscriptions/{pending.pk}/approve/", {"reason": "ok"}, format="json")
    assert (approved.json()["state"], approved.json()["reason"]) == ("approved", "ok")
    assert Subscription.objects.get(pk=pending.pk).decided_by.username == "staff"
    assert "alice@example.com" in mail.outbox[0].to and "approved" in mail.outbox[0].subject


def test_a_rejection_needs_a_reason_and_a_decided_request_cannot_be_decided_again(staff, pending):
    admin = client_for(staff)
    assert_error(
        admin.post(f"/api/v1/subscriptions/{pending.pk}/reject/", {"reason": " "}, format="json"), 400, "invalid_input"
    )
    rejected = admin.post(f"/api/v1/subscriptions/{pending.pk}/reject/", {"reason": "No"}, format="json")
    assert rejected.json()["state"] == "rejected"
    assert_error(admin.post(f"/api/v1/subscriptions/{pending.pk}/approve/"), 409, "illegal_transition")
    assert Subscription.objects.get(pk=pending.pk).state == SubscriptionState.REJECTED


def test_staff_reads_and_cancels_any_teams_subscription(staff, app, bob, api, free_plan):
    sub, _ = subscriptions.request_subscription(app, api, free_plan, actor=bob)
    admin = client_for(staff)
    assert admin.get(f"/api/v1/subscriptions/{sub.pk}/").json()["state"] == "approved"
    cancelled = admin.post(f"/api/v1/subscriptions/{sub.pk}/cancel/", {"reason": "Abuse"}).json()
    assert (cancelled["state"], cancelled["reason"]) == ("revoked", "Abuse")


def test_staff_deciding_an_unknown_subscription_gets_404(staff):
    assert_error(client_for(staff).post("/api/v1/subscriptions/999999/approve/"), 404, "not_found")


@pytest.mark.parametrize("who", ["alice", "bob", "vera", "charlie"])
def test_no_team_member_can_decide_requests_or_move_versions(request, who, pending, api):
    client = client_for(request.getfixturevalue(who))
    version = api.versions.get()
    assert_error(client.post(f"/api/v1/subscriptions/{pending.pk}/approve/"), 403, "permission_denied")
    assert_error(client.post(f"/api/v1/subscriptions/{pending.pk}/reject/", {"reason": "x"}), 403, "permission_denied")
    assert_error(client.get("/api/v1/versions/"), 403, "permission_denied")
    assert_error(
        client.post(f"/api/v1/versions/{version.pk}/transition/", {"state": "retired"}), 403, "permission_denied"
    )
    assert Subscription.objects.get(pk=pending.pk).state == SubscriptionState.PENDING
    assert ApiVersion.objects.get(pk=version.pk).state == VersionState.PUBLISHED


def test_staff_lists_versions_in_every_state(staff, api, draft_version):
    ApiVersion.objects.create(api=api, version="v2", base_path="/weather/v2")
    listed = client_for(staff).get("/api/v1/versions/", {"api": "weather"}).json()["results"]
    assert [(v["api"], v["version"], v["state"]) for v in listed] == [
        ("weather", "v1", "published"),
        ("weather", "v2", "draft"),
    ]
    drafts = client_for(staff).get("/api/v1/versions/", {"state": "draft"}).json()["results"]
    assert [v["version"] for v in drafts] == ["v2"]


def test_staff_moves_a_version_through_its_lifecycle_with_clear_errors(api, staff):
    version = api.versions.get()
    admin = client_for(staff)
    url = f"/api/v1/versions/{version.pk}/transition/"
    assert_error(admin.post(url, {"state": "archived"}, format="json"), 400, "invalid_input")
    assert_error(admin.post(url, {"state": "draft"}, format="json"), 400, "invalid_input")
    past = (timezone.now() - timedelta(days=1)).isoformat()
    assert_error(admin.post(url, {"state": "deprecated", "sunset_at": past}, format="json"), 400, "invalid_input")
    sunset = timezone.now() + timedelta(days=60)
    moved = admin.post(url, {"state": "deprecated", "sunset_at": sunset.isoformat()}, format="json").json()
    assert moved["state"] == "deprecated" and moved["sunset_at"].startswith(sunset.date().isoformat())
    assert admin.post(url, {"state": "retired", "reason": "v2 is out"}, format="json").json()["state"] == "retired"
    assert_error(admin.post(url, {"state": "published"}, format="json"), 409, "illegal_transition")
    assert_error(admin.post("/api/v1/versions/999999/transition/", {"state": "retired"}), 404, "not_found")


def test_publishing_needs_an_enabled_upstream(staff, draft_version):
    draft_version.targets.update(enabled=False)
    url = f"/api/v1/versions/{draft_version.pk}/transition/"
    error = assert_error(client_for(staff).post(url, {"state": "published"}, format="json"), 400, "invalid_input")
    assert "upstream" in error["message"]


def test_publishing_under_the_gateways_operations_namespace_is_refused(staff, draft_version):
    # Saved without full_clean (as before the rule existed): the transition endpoint still refuses it.
    ApiVersion.objects.filter(pk=draft_version.pk).update(base_path="/_Portico/weather")
    url = f"/api/v1/versions/{draft_version.pk}/transition/"
    error = assert_error(client_for(staff).post(url, {"state": "published"}, format="json"), 400, "invalid_input")
    assert "/_portico" in error["message"] and "reserved" in error["message"]
    draft_version.refresh_from_db()
    assert draft_version.state == VersionState.DRAFT
