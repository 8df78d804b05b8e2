"""The Django admin for the LLM control plane saves through the services: a key's secret is a
write-only field, shown masked afterwards; a route and its inline targets are one service call."""

import pytest
from django.urls import reverse

from llm import crypto
from llm.models import Budget, ModelRoute, Provider, ProviderKey, TargetRole
from portal.models import AuditEvent
from tests.llm import factories as f

pytestmark = pytest.mark.django_db

SECRET = "sk-admin-typed-secret-0123456789QRST"


@pytest.fixture
def admin_client(client, staff):
    client.force_login(staff)
    return client


def test_every_llm_admin_page_opens(admin_client, staff, publisher, acme):
    api = f.ai_api(publisher, staff)
    provider = f.provider(staff)
    f.route(staff, api, "r", [f.model(staff, provider)])
    for name in ("provider", "providerkey", "model", "modelroute", "budget", "budgetalert"):
        assert admin_client.get(reverse(f"admin:llm_{name}_changelist")).status_code == 200, name
        if name != "budgetalert":
            assert admin_client.get(reverse(f"admin:llm_{name}_add")).status_code == 200, name
    route = ModelRoute.objects.get()
    assert admin_client.get(reverse("admin:llm_modelroute_change", args=[route.pk])).status_code == 200


def test_a_key_added_in_the_admin_is_encrypted_and_never_shown_again(admin_client, staff):
    provider = f.provider(staff)
    added = admin_client.post(
        reverse("admin:llm_providerkey_add"),
        {
            "provider": provider.pk,
            "label": "prod",
            "secret": SECRET,
            "priority": 0,
            "expires_at_0": "",
            "expires_at_1": "",
        },
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    key = ProviderKey.objects.get()
    assert crypto.decrypt(key.secret_ciphertext) == SECRET and key.last4 == "QRST"
    assert AuditEvent.objects.filter(action="llm.key.added").exists()  # through the service
    for url in (
        reverse("admin:llm_providerkey_change", args=[key.pk]),
        reverse("admin:llm_providerkey_changelist"),
        reverse("admin:llm_provider_change", args=[provider.pk]),
    ):
        page = admin_client.get(url).content.decode()
        assert SECRET not in page and key.secret_ciphertext not in page
    assert "••••••••QRST" in admin_client.get(reverse("admin:llm_providerkey_changelist")).content.decode()


def test_a_secret_with_a_line_break_is_a_form_error(admin_client, staff):
    provider = f.provider(staff)
    page = admin_client.post(
        reverse("admin:llm_providerkey_add"),
        {"provider": provider.pk, "secret": "sk-abc\rX-Evil: 1", "priority": 0},
    )
    assert page.status_code == 200 and "printable ASCII" in page.content.decode()
    assert not ProviderKey.objects.exists()


def _route_form(api, members, alias="fast"):
    form = {
        "alias": alias,
        "api": api.pk,
        "timeout_seconds": 60,
        "first_byte_timeout_seconds": 30,
        "retries": 1,
        "cache_ttl_seconds": 0,
        "pii_mode": "off",
        "deny_list": "",
        "default_max_tokens": 1024,
        "targets-TOTAL_FORMS": len(members),
        "targets-INITIAL_FORMS": 0,
        "targets-MIN_NUM_FORMS": 0,
        "targets-MAX_NUM_FORMS": 1000,
    }
    for n, (role, model, weight, position) in enumerate(members):
        form.update(
            {
                f"targets-{n}-role": role,
                f"targets-{n}-model": model.pk,
                f"targets-{n}-weight": weight,
                f"targets-{n}-position": position,
            }
        )
    return form


def test_a_route_and_its_inline_targets_are_saved_by_the_service(admin_client, staff, publisher):
    api = f.ai_api(publisher, staff)
    provider = f.provider(staff)
    mini, gpt4o = f.model(staff, provider), f.model(staff, provider, "gpt-4o")
    response = admin_client.post(
        reverse("admin:llm_modelroute_add"),
        _route_form(api, [("target", mini, 70, 0), ("target", gpt4o, 30, 0), ("fallback", gpt4o, 1, 0)]),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    route = ModelRoute.objects.get(alias="fast")
    members = {(t.role, t.model_id, t.weight if t.role == TargetRole.TARGET else None) for t in route.targets.all()}
    assert members == {("target", mini.pk, 70), ("target", gpt4o.pk, 30), ("fallback", gpt4o.pk, None)}
    assert AuditEvent.objects.filter(action="llm.route.created", object_id=str(route.pk)).exists()


def test_a_route_without_a_target_is_a_form_error(admin_client, staff, publisher):
    api = f.ai_api(publisher, staff)
    mini = f.model(staff, f.provider(staff))
    page = admin_client.post(reverse("admin:llm_modelroute_add"), _route_form(api, [("fallback", mini, 1, 0)]))
    assert page.status_code == 200 and "at least one target" in page.content.decode()
    assert not ModelRoute.objects.exists()


def test_a_rest_api_cannot_be_chosen_for_a_route(admin_client, staff, api):
    mini = f.model(staff, f.provider(staff))
    page = admin_client.post(reverse("admin:llm_modelroute_add"), _route_form(api, [("target", mini, 1, 0)]))
    assert page.status_code == 200 and not ModelRoute.objects.exists()


def test_a_provider_is_created_with_its_default_endpoint_and_a_budget_with_its_scope(admin_client, acme):
    response = admin_client.post(
        reverse("admin:llm_provider_add"),
        {"name": "Anthropic", "kind": "anthropic", "base_url": "", "azure_api_version": "", "enabled": "on",
         "keys-TOTAL_FORMS": 0, "keys-INITIAL_FORMS": 0},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Provider.objects.get().base_url == "https://api.anthropic.com"
    response = admin_client.post(
        reverse("admin:llm_budget_add"),
        {"scope": "tenant", "tenant": acme.pk, "period": "monthly", "spend_limit_usd": "20"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Budget.objects.get().owner_tenant == acme
    mismatch = admin_client.post(
        reverse("admin:llm_budget_add"), {"scope": "application", "tenant": acme.pk, "period": "monthly"}
    )
    assert mismatch.status_code == 200 and Budget.objects.count() == 1


def test_editing_a_route_in_the_admin_rewrites_its_targets_through_the_service(admin_client, staff, publisher):
    api = f.ai_api(publisher, staff)
    provider = f.provider(staff)
    mini, gpt4o = f.model(staff, provider), f.model(staff, provider, "gpt-4o")
    route = f.route(staff, api, "fast", [mini])
    existing = route.targets.get()
    form = _route_form(api, [("target", mini, 40, 0), ("fallback", gpt4o, 1, 0)], alias="fast")
    form.update({"targets-INITIAL_FORMS": 1, "targets-0-id": existing.pk, "targets-0-route": route.pk, "retries": 4})
    response = admin_client.post(reverse("admin:llm_modelroute_change", args=[route.pk]), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    route.refresh_from_db()
    assert route.retries == 4
    assert sorted((t.role, t.model_id, t.weight) for t in route.targets.all()) == [
        ("fallback", gpt4o.pk, 1),
        ("target", mini.pk, 40),
    ]
    assert AuditEvent.objects.filter(action="llm.route.updated", object_id=str(route.pk)).exists()
