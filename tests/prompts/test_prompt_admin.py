"""The staff admin for prompt APIs: saves go through llm.prompt_services (checked, audited),
lifecycle actions through portal.services.lifecycle; a published prompt is read-only."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from llm.models import PromptApi, PromptVersion
from portal.models import AuditEvent, VersionState
from tests.prompts.builders import SENTIMENT_INPUT, SENTIMENT_OUTPUT, live_route, sentiment_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def route(staff, publisher):
    return live_route(staff, publisher)


def version_post(api, route, **overrides):
    data = {
        "api": api.pk,
        "version_name": "v1",
        "base_path": "/admin-made/v1",
        "route": route.pk,
        "system_prompt": "Classify.",
        "user_template": "{{text}}",
        "input_schema": json.dumps(SENTIMENT_INPUT),
        "output_mode": "json",
        "output_schema": json.dumps(SENTIMENT_OUTPUT),
        "temperature": "",
        "max_tokens": "",
    }
    data.update(overrides)
    return data


def test_pages_open(admin_client, alice, acme, route):
    prompt = sentiment_version(alice, acme, route)
    for name in ("promptapi", "promptversion"):
        assert admin_client.get(reverse(f"admin:llm_{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:llm_{name}_add")).status_code == 200
    page = admin_client.get(reverse("admin:llm_promptapi_change", args=[prompt.version.api_id]))
    assert page.status_code == 200 and b"/sentiment/v1" in page.content
    assert admin_client.get(reverse("admin:llm_promptversion_change", args=[prompt.pk])).status_code == 200


def test_staff_create_an_api_and_a_version_through_the_services(admin_client, staff, acme, route):
    response = admin_client.post(
        reverse("admin:llm_promptapi_add"),
        {
            "name": "Admin made",
            "slug": "admin-made",
            "owner": acme.pk,
            "description": "",
            "visibility": "public",
            "versions-TOTAL_FORMS": "0",  # the read-only versions inline's management form
            "versions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    api = PromptApi.objects.get(slug="admin-made")
    assert AuditEvent.objects.filter(action="prompt_api.created", object_id=str(api.pk), actor=staff).exists()
    response = admin_client.post(reverse("admin:llm_promptversion_add"), version_post(api, route))
    assert response.status_code == 302, response.content.decode()[-3000:]
    prompt = PromptVersion.objects.get(version__api=api)
    assert prompt.version.base_path == "/admin-made/v1" and prompt.output_schema == SENTIMENT_OUTPUT
    assert AuditEvent.objects.filter(action="prompt_version.created", actor=staff).exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_schema", "[" * 20_000 + "]" * 20_000, "nests too deeply"),
        ("user_template", "{{ghost}}", "not a property"),
        ("output_schema", "", "JSON output needs"),
        ("base_path", "/_portico/x", "reserved"),
    ],
)
def test_bad_versions_are_form_errors(admin_client, alice, acme, route, field, value, message):
    api = PromptApi.objects.get(pk=sentiment_version(alice, acme, route).version.api_id)
    response = admin_client.post(reverse("admin:llm_promptversion_add"), version_post(api, route, **{field: value}))
    assert response.status_code == 200 and message in response.content.decode()
    assert PromptVersion.objects.count() == 1


def test_edit_a_draft_then_publish_and_the_prompt_is_read_only(admin_client, staff, alice, acme, route):
    prompt = sentiment_version(alice, acme, route)
    url = reverse("admin:llm_promptversion_change", args=[prompt.pk])
    data = version_post(prompt.version.api, route, system_prompt="Classify, tersely.")
    response = admin_client.post(url, data)
    assert response.status_code == 302
    prompt.refresh_from_db()
    assert prompt.system_prompt == "Classify, tersely."
    assert AuditEvent.objects.filter(action="prompt.updated", actor=staff).exists()

    admin_client.post(
        reverse("admin:llm_promptversion_changelist"), {"action": "publish", ACTION_CHECKBOX_NAME: [prompt.pk]}
    )
    prompt.version.refresh_from_db()
    assert prompt.version.state == VersionState.PUBLISHED and prompt.version.openapi["openapi"] == "3.1.0"
    admin_client.post(url, {**data, "system_prompt": "Changed after publishing"})
    prompt.refresh_from_db()
    assert prompt.system_prompt == "Classify, tersely."
    admin_client.post(
        reverse("admin:llm_promptversion_changelist"),
        {"action": "retire", ACTION_CHECKBOX_NAME: [prompt.pk], "apply": "1", "reason": "done"},
    )
    prompt.version.refresh_from_db()
    assert prompt.version.state == VersionState.RETIRED


def test_a_save_the_service_refuses_is_a_message_and_nothing_saved_never_a_500(client, staff, alice, acme, route):
    # An operator may use the prompt admin pages (llm permissions) without the portal's
    # permissions the services ask for: the refusal must be said, not "added successfully"
    # for no row (the API) or a 500 logging a version that was never made.
    from django.contrib.admin.models import LogEntry
    from django.contrib.auth.models import Permission

    from tests.conftest import make_user

    prompt = sentiment_version(alice, acme, route)
    operator = make_user("prompt-op")
    operator.is_staff = True
    operator.save()
    operator.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="llm",
            codename__in=["add_promptapi", "change_promptapi", "view_promptapi"]
            + ["add_promptversion", "change_promptversion", "view_promptversion"],
        )
    )
    client.force_login(operator)
    response = client.post(
        reverse("admin:llm_promptapi_add"),
        {"name": "X", "slug": "x-api", "owner": acme.pk, "description": "", "visibility": "public"}
        | {"versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert shown == ["Nothing was saved: Your administrator account lacks the portal.add_api permission."]
    assert not PromptApi.objects.filter(slug="x-api").exists()
    response = client.post(
        reverse("admin:llm_promptversion_add"),
        version_post(prompt.version.api, route, version_name="v9", base_path="/sentiment/v9"),
        follow=True,
    )
    assert response.status_code == 200
    assert "lacks the portal.add_apiversion permission" in " ".join(str(m) for m in response.context["messages"])
    assert PromptVersion.objects.count() == 1
    response = client.post(
        reverse("admin:llm_promptversion_change", args=[prompt.pk]),
        version_post(prompt.version.api, route, system_prompt="Changed"),
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert shown == ["Nothing was saved: Your administrator account lacks the portal.change_apiversion permission."]
    prompt.refresh_from_db()
    assert prompt.system_prompt != "Changed"
    assert not LogEntry.objects.filter(user=operator).exists()


def test_the_api_admin_keeps_a_prompt_apis_kind_and_generated_document(client, staff, alice, acme, route, api):
    # A published prompt API turned REST in the APIs admin would be routed to no upstream
    # (and its prompt rows orphaned); a REST API turned prompt would stop being served. Its
    # version's OpenAPI document is generated from the schemas: replacing it there is refused
    # as provider.update_version refuses it.
    from portal.models import Api
    from portal.services import admin_edits, lifecycle
    from portal.services.errors import InvalidInput
    from tests.test_admin_version_rules import as_shown

    rest = api
    prompt = sentiment_version(alice, acme, route)
    version = lifecycle.publish_version(prompt.version, actor=alice)
    prompt_api = Api.objects.get(pk=version.api_id)
    client.force_login(staff)
    url = reverse("admin:portal_api_change", args=[prompt_api.pk])
    response = client.post(url, {**as_shown(client, url), "kind": "rest"}, follow=True)
    assert "kind of an API" in response.content.decode()
    prompt_api.refresh_from_db()
    assert prompt_api.kind == "prompt"
    url = reverse("admin:portal_apiversion_change", args=[version.pk])
    document = {"openapi": "3.1.0", "info": {"title": "Forged", "version": "1"}, "paths": {}}
    response = client.post(url, {**as_shown(client, url), "openapi": json.dumps(document)}, follow=True)
    assert "document is generated" in response.content.decode()
    version.refresh_from_db()
    assert version.openapi["info"]["title"] != "Forged"
    rest.kind = "prompt"
    with pytest.raises(InvalidInput, match="kind of an API"):
        admin_edits.save_object(rest, actor=staff, changed=["kind"])
