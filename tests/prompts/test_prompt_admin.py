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
