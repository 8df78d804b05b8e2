"""Being staff opens the admin; what an operator may change there is their Django
permissions. A view-only operator sees subscriptions and versions but is offered no
decision or lifecycle action, and the services refuse them too (a POST made anyway, the
REST API, a script)."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.urls import reverse

from portal.models import ApiKey, AuditEvent, Subscription, SubscriptionState, VersionState
from portal.services import keys, lifecycle, subscriptions
from portal.services.errors import PermissionDenied
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIPTIONS = reverse("admin:portal_subscription_changelist")
VERSIONS = reverse("admin:portal_apiversion_changelist")


def operator(name: str, *codenames: str):
    user = make_user(name)
    user.is_staff = True
    user.save()
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="portal", codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # a fresh object: permissions are cached per instance


@pytest.fixture
def viewer_op(db):
    return operator("viewer-op", "view_subscription", "view_apiversion", "view_apikey")


@pytest.fixture
def deciding_op(db):
    return operator("deciding-op", "view_subscription", "change_subscription", "view_apiversion", "change_apiversion")


@pytest.fixture
def pending(app, api, gold_plan, bob):
    return subscriptions.request_subscription(app, api, gold_plan, actor=bob)[0]


def offered_actions(client, url) -> set[str]:
    response = client.get(url)
    assert response.status_code == 200  # they may look
    form = response.context["action_form"]
    return {name for name, _label in form.fields["action"].choices} if form else set()


def test_a_view_only_operator_is_offered_no_decision_or_lifecycle_action(client, viewer_op, pending):
    client.force_login(viewer_op)
    assert not offered_actions(client, SUBSCRIPTIONS) & {"approve", "reject", "revoke", "delete_selected"}
    assert not offered_actions(client, VERSIONS) & {"publish", "deprecate", "retire", "delete_selected"}


def test_a_view_only_operator_cannot_approve_by_posting_the_action_anyway(client, viewer_op, pending):
    client.force_login(viewer_op)
    data = {"action": "approve", ACTION_CHECKBOX_NAME: [str(pending.pk)], "apply": "1", "reason": "ok"}
    response = client.post(SUBSCRIPTIONS, data, follow=True)
    assert response.status_code in (200, 403)
    assert Subscription.objects.get(pk=pending.pk).state == SubscriptionState.PENDING
    assert not AuditEvent.objects.filter(action="subscription.approved").exists()


def test_a_view_only_operator_cannot_retire_by_posting_the_action_anyway(client, viewer_op, api):
    version = api.versions.get()
    client.force_login(viewer_op)
    data = {"action": "retire", ACTION_CHECKBOX_NAME: [str(version.pk)], "apply": "1", "reason": "old"}
    response = client.post(VERSIONS, data, follow=True)
    assert response.status_code in (200, 403)
    version.refresh_from_db()
    assert version.state == VersionState.PUBLISHED


def test_the_services_refuse_a_view_only_operator(viewer_op, pending, api, app, bob):
    version = api.versions.get()
    with pytest.raises(PermissionDenied, match="portal.change_subscription"):
        subscriptions.approve_subscription(pending, actor=viewer_op)
    with pytest.raises(PermissionDenied):
        subscriptions.reject_subscription(pending, actor=viewer_op, reason="no")
    with pytest.raises(PermissionDenied, match="portal.change_apiversion"):
        lifecycle.retire_version(version, actor=viewer_op)
    with pytest.raises(PermissionDenied):
        lifecycle.deprecate_version(version, actor=viewer_op)
    key, _secret = keys.create_api_key(app, actor=bob)
    with pytest.raises(PermissionDenied, match="portal.delete_apikey"):
        keys.delete_api_key(key, actor=viewer_op)
    assert ApiKey.objects.filter(pk=key.pk).exists()
    assert Subscription.objects.get(pk=pending.pk).state == SubscriptionState.PENDING
    version.refresh_from_db()
    assert version.state == VersionState.PUBLISHED


def test_an_operator_with_the_change_permissions_decides_and_retires(client, deciding_op, pending, api):
    client.force_login(deciding_op)
    assert {"approve", "reject", "revoke"} <= offered_actions(client, SUBSCRIPTIONS)
    assert {"publish", "deprecate", "retire"} <= offered_actions(client, VERSIONS)
    data = {"action": "approve", ACTION_CHECKBOX_NAME: [str(pending.pk)], "apply": "1", "reason": "ok"}
    assert b"1 done" in client.post(SUBSCRIPTIONS, data, follow=True).content
    assert Subscription.objects.get(pk=pending.pk).state == SubscriptionState.APPROVED
    version = lifecycle.retire_version(api.versions.get(), actor=deciding_op, reason="replaced")
    assert version.state == VersionState.RETIRED


def test_the_rest_api_refuses_a_view_only_operator_too(viewer_op, pending, api):
    from tests.api.conftest import client_for

    client = client_for(viewer_op)
    response = client.post(f"/api/v1/subscriptions/{pending.pk}/approve/", {"reason": "ok"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    version = api.versions.get()
    response = client.post(f"/api/v1/versions/{version.pk}/transition/", {"state": "retired"}, format="json")
    assert response.status_code == 403
    assert Subscription.objects.get(pk=pending.pk).state == SubscriptionState.PENDING
    version.refresh_from_db()
    assert version.state == VersionState.PUBLISHED
