"""Being staff opens the admin; what an operator may change in the LLM control plane is their
Django permissions (``llm.change_provider``, ``llm.change_providerkey``,
``llm.change_modelroute``, ``llm.add_budget``...), checked by ``llm.services``. A view-only
operator changes nothing through the admin (a form or an action posted anyway) nor the REST
API; an operator holding the permissions (not a superuser) can."""

from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.urls import reverse

from llm import services
from llm.models import Budget, KeyState, ModelRoute, Provider, ProviderKey
from portal.models import AuditEvent
from portal.services.errors import PermissionDenied
from tests.api.conftest import assert_error, client_for
from tests.conftest import make_user
from tests.llm import factories as f

pytestmark = pytest.mark.django_db

SECRET = "sk-perm-test-0123456789abcdefWXYZ"
LLM_MODELS = ("provider", "providerkey", "model", "modelroute", "routetarget", "budget")


def operator(name: str, *verbs: str):
    user = make_user(name)
    user.is_staff = True
    user.save()
    codenames = [f"{verb}_{model}" for verb in verbs for model in LLM_MODELS]
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="llm", codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # a fresh object: permissions are cached per instance


@pytest.fixture
def viewer_op(db):
    return operator("llm-viewer", "view")


@pytest.fixture
def editor_op(db):
    return operator("llm-editor", "view", "add", "change", "delete")


@pytest.fixture
def world(staff, publisher, acme):
    api = f.ai_api(publisher, staff)
    provider = f.provider(staff)
    key = services.add_key(provider, actor=staff, secret=SECRET, label="prod")
    model = f.model(staff, provider)
    route = f.route(staff, api, "fast", [model])
    budget = services.create_budget(actor=staff, subject=acme, spend_limit_usd=Decimal("10"))
    return {"api": api, "provider": provider, "key": key, "model": model, "route": route, "budget": budget}


def unchanged(world) -> None:
    provider = Provider.objects.get(pk=world["provider"].pk)
    assert provider.name == world["provider"].name and provider.enabled
    assert ProviderKey.objects.get(pk=world["key"].pk).state == KeyState.ENABLED
    assert ModelRoute.objects.get(pk=world["route"].pk).retries == world["route"].retries
    assert Budget.objects.get(pk=world["budget"].pk).spend_limit_usd == Decimal("10")
    assert Budget.objects.count() == 1


def test_the_services_name_the_permission_a_view_only_operator_lacks(viewer_op, world, acme):
    with pytest.raises(PermissionDenied, match="llm.change_provider"):
        services.update_provider(world["provider"], actor=viewer_op, enabled=False)
    with pytest.raises(PermissionDenied, match="llm.change_providerkey"):
        services.disable_key(world["key"], actor=viewer_op)
    with pytest.raises(PermissionDenied, match="llm.add_providerkey"):
        services.add_key(world["provider"], actor=viewer_op, secret=SECRET)
    with pytest.raises(PermissionDenied, match="llm.change_modelroute"):
        services.update_route(world["route"], actor=viewer_op, retries=5)
    with pytest.raises(PermissionDenied, match="llm.delete_modelroute"):
        services.delete_route(world["route"], actor=viewer_op)
    with pytest.raises(PermissionDenied, match="llm.add_budget"):
        services.create_budget(actor=viewer_op, subject=acme, spend_limit_usd=Decimal("1"))
    with pytest.raises(PermissionDenied, match="llm.change_budget"):
        services.update_budget(world["budget"], actor=viewer_op, spend_limit_usd=Decimal("1"))
    unchanged(world)
    assert ProviderKey.objects.count() == 1


def test_a_view_only_operator_changes_nothing_through_the_admin(client, viewer_op, world):
    client.force_login(viewer_op)
    keys = reverse("admin:llm_providerkey_changelist")
    page = client.get(keys)
    assert page.status_code == 200  # they may look
    form = page.context["action_form"]
    offered = {name for name, _label in form.fields["action"].choices} if form else set()
    assert not offered & {"disable", "enable", "delete_selected"}
    # The action posted anyway is refused, and so are the change forms.
    client.post(keys, {"action": "disable", ACTION_CHECKBOX_NAME: [str(world["key"].pk)]}, follow=True)
    provider_form = {
        "name": "Renamed", "kind": "openai", "base_url": f.MOCK + "/openai/v1", "azure_api_version": "",
        "keys-TOTAL_FORMS": 0, "keys-INITIAL_FORMS": 0,
    }  # fmt: skip
    response = client.post(reverse("admin:llm_provider_change", args=[world["provider"].pk]), provider_form)
    assert response.status_code == 403
    route_form = {
        "alias": "fast",
        "api": world["api"].pk,
        "retries": 5,
        "targets-TOTAL_FORMS": 0,
        "targets-INITIAL_FORMS": 0,
    }
    response = client.post(reverse("admin:llm_modelroute_change", args=[world["route"].pk]), route_form)
    assert response.status_code == 403
    budget_form = {"period": "monthly", "spend_limit_usd": "1"}
    response = client.post(reverse("admin:llm_budget_change", args=[world["budget"].pk]), budget_form)
    assert response.status_code == 403
    response = client.post(reverse("admin:llm_budget_add"), {"scope": "tenant", "tenant": world["api"].owner_id})
    assert response.status_code == 403
    unchanged(world)


def test_an_operator_with_the_permissions_disables_a_key_in_the_admin(client, editor_op, world):
    client.force_login(editor_op)
    keys = reverse("admin:llm_providerkey_changelist")
    page = client.get(keys)
    assert {"disable", "enable"} <= {name for name, _ in page.context["action_form"].fields["action"].choices}
    client.post(keys, {"action": "disable", ACTION_CHECKBOX_NAME: [str(world["key"].pk)]}, follow=True)
    assert ProviderKey.objects.get(pk=world["key"].pk).state == KeyState.DISABLED
    event = AuditEvent.objects.get(action="llm.key.disabled")
    assert event.actor == editor_op
    provider_form = {
        "name": "Renamed", "kind": "openai", "base_url": f.MOCK + "/openai/v1", "azure_api_version": "",
        "enabled": "on", "keys-TOTAL_FORMS": 1, "keys-INITIAL_FORMS": 1, "keys-0-id": world["key"].pk,
        "keys-0-provider": world["provider"].pk,
    }  # fmt: skip
    response = client.post(reverse("admin:llm_provider_change", args=[world["provider"].pk]), provider_form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Provider.objects.get(pk=world["provider"].pk).name == "Renamed"


def test_a_view_only_operator_changes_nothing_through_the_rest_api(viewer_op, world, acme):
    api = client_for(viewer_op)
    assert api.get("/api/v1/llm/providers/").status_code == 200  # reading is what they may do
    pid, kid, rid, bid = (world[n].pk for n in ("provider", "key", "route", "budget"))
    refusals = [
        api.patch(f"/api/v1/llm/providers/{pid}/", {"enabled": False}, format="json"),
        api.post("/api/v1/llm/keys/", {"provider": pid, "secret": SECRET}, format="json"),
        api.post(f"/api/v1/llm/keys/{kid}/disable/", {"reason": "x"}, format="json"),
        api.patch(f"/api/v1/llm/routes/{rid}/", {"retries": 5}, format="json"),
        api.delete(f"/api/v1/llm/routes/{rid}/"),
        api.post(
            "/api/v1/llm/budgets/", {"scope": "tenant", "subject": acme.pk, "spend_limit_usd": "1"}, format="json"
        ),
        api.patch(f"/api/v1/llm/budgets/{bid}/", {"spend_limit_usd": "1"}, format="json"),
    ]
    for response in refusals:
        assert_error(response, 403, "permission_denied")
    unchanged(world)
    assert ProviderKey.objects.count() == 1 and ModelRoute.objects.exists()


def test_an_operator_with_the_permissions_changes_through_the_rest_api(editor_op, world, acme):
    api = client_for(editor_op)
    pid, kid, rid, bid = (world[n].pk for n in ("provider", "key", "route", "budget"))
    assert api.patch(f"/api/v1/llm/providers/{pid}/", {"enabled": False}, format="json").status_code == 200
    assert api.post(f"/api/v1/llm/keys/{kid}/disable/", {"reason": "x"}, format="json").status_code == 200
    assert api.patch(f"/api/v1/llm/routes/{rid}/", {"retries": 5}, format="json").status_code == 200
    assert api.patch(f"/api/v1/llm/budgets/{bid}/", {"spend_limit_usd": "3"}, format="json").status_code == 200
    assert not Provider.objects.get(pk=pid).enabled
    assert ProviderKey.objects.get(pk=kid).state == KeyState.DISABLED
    assert ModelRoute.objects.get(pk=rid).retries == 5
    assert Budget.objects.get(pk=bid).spend_limit_usd == Decimal("3")
