"""Authoring prompt APIs through the services: who may, what is checked at save, what
publishing generates, and that a published prompt is frozen."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate

from llm import prompt_services
from llm.models import PromptApi, PromptVersion
from portal.models import AuditEvent, VersionState
from portal.services import lifecycle
from portal.services.errors import IllegalTransition, InvalidInput, NotFound, PermissionDenied
from tests.prompts.builders import SENTIMENT_INPUT, SENTIMENT_OUTPUT, live_route, sentiment_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def route(staff, publisher):
    return live_route(staff, publisher)


def test_an_owner_creates_a_prompt_api_and_a_version_audited(alice, acme, route, redis_client):
    prompt = sentiment_version(alice, acme, route)
    api = PromptApi.objects.get(slug="sentiment")
    assert api.is_prompt and api.owner == acme
    assert prompt.version.state == VersionState.DRAFT and prompt.version.base_path == "/sentiment/v1"
    actions = list(AuditEvent.objects.filter(tenant=acme).order_by("pk").values_list("action", flat=True))
    assert actions == ["prompt_api.created", "prompt_version.created"]


def test_outsiders_and_plain_members_cannot_author(bob, charlie, alice, acme, globex, route):
    with pytest.raises(NotFound):
        prompt_services.create_prompt_api(acme, actor=charlie, slug="x", name="X")
    with pytest.raises(PermissionDenied):
        prompt_services.create_prompt_api(acme, actor=bob, slug="x", name="X")
    prompt = sentiment_version(alice, acme, route)
    with pytest.raises(NotFound):
        prompt_services.update_prompt(prompt, actor=charlie, system_prompt="leak")
    with pytest.raises(PermissionDenied):
        prompt_services.update_prompt(prompt, actor=bob, system_prompt="leak")
    assert PromptVersion.objects.get(pk=prompt.pk).system_prompt.startswith("Classify")


def test_staff_may_create_for_any_team(staff, acme, route):
    api = prompt_services.create_prompt_api(acme, actor=staff, slug="staff-made", name="Staff made")
    assert api.owner == acme


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"user_template": "Hi {{nobody}}"}, "user template", "{{nobody}}"),
        ({"user_template": "{{ text | upper }}"}, "user template", "not a placeholder"),
        ({"system_prompt": "As {{role}}"}, "system prompt", "no placeholders"),
        ({"input_schema": {"type": "array"}}, "input schema", "object"),
        (
            {"input_schema": {"type": "object", "properties": {"a": {"$ref": "https://evil.example/s.json"}}}},
            "input schema",
            "local",
        ),
        ({"input_schema": {"type": "object", "properties": {"a": {"type": "strin"}}}}, "input schema", "strin"),
        ({"output_schema": {}}, "output schema", "JSON output needs"),
        ({"output_mode": "text"}, "output schema", "JSON output only"),
        (
            {
                "input_schema": {
                    "type": "object",
                    "properties": {"stream": {"type": "boolean"}, "text": {}, "language": {}},
                }
            },
            "input schema",
            "reserved",
        ),
    ],
)
def test_bad_prompts_are_refused_at_save_naming_the_field(alice, acme, route, changes, field, words):
    prompt = sentiment_version(alice, acme, route)
    with pytest.raises(InvalidInput) as refused:
        prompt_services.update_prompt(prompt, actor=alice, **changes)
    assert field in refused.value.message and words in refused.value.message
    assert PromptVersion.objects.get(pk=prompt.pk).input_schema == SENTIMENT_INPUT


def test_a_ref_bomb_is_refused(alice, acme, route):
    # Each definition refers to the previous one twice: 2**30 nodes once expanded.
    defs = {"d0": {"type": "string"}}
    for n in range(1, 31):
        defs[f"d{n}"] = {
            "type": "array",
            "items": {"$ref": f"#/$defs/d{n - 1}"},
            "prefixItems": [{"$ref": f"#/$defs/d{n - 1}"}, {"$ref": f"#/$defs/d{n - 1}"}],
        }
    bomb = {"type": "object", "$defs": defs, "properties": {"text": {"$ref": "#/$defs/d30"}}}
    prompt = sentiment_version(alice, acme, route)
    with pytest.raises(InvalidInput, match="input schema: The schema expands to more than"):
        prompt_services.update_prompt(prompt, actor=alice, input_schema=bomb, user_template="{{text}}")


def test_deep_schemas_are_refused_without_recursing(alice, acme, route):
    deep: dict = {"type": "string"}
    for _ in range(5000):
        deep = {"type": "array", "items": deep}
    prompt = sentiment_version(alice, acme, route)
    with pytest.raises(InvalidInput):
        prompt_services.update_prompt(prompt, actor=alice, input_schema={"type": "object", "properties": {"a": deep}})


def test_a_route_of_an_unpublished_ai_api_is_not_offered(staff, alice, acme, publisher, route):
    from tests.llm import factories

    draft_api = factories.ai_api(publisher, staff, slug="draft-llm", publish=False)
    hidden = factories.route(staff, draft_api, "hidden", [factories.model(staff, factories.provider(staff, name="p2"))])
    assert route in prompt_services.available_routes() and hidden not in prompt_services.available_routes()
    api = prompt_services.create_prompt_api(acme, actor=alice, slug="t", name="T")
    with pytest.raises(InvalidInput, match="route"):
        prompt_services.create_prompt_version(api, actor=alice, version="v1", base_path="/t/v1", route=hidden)


def test_publishing_generates_a_valid_openapi_document_and_freezes_the_prompt(alice, acme, route):
    prompt = sentiment_version(alice, acme, route)
    version = lifecycle.publish_version(prompt.version, actor=alice)
    assert version.state == VersionState.PUBLISHED
    document = version.openapi
    validate(document)  # openapi-spec-validator, 3.1
    operation = document["paths"]["/sentiment/v1"]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["example"] == {"text": "I love this product.", "language": "en"}
    assert set(operation["responses"]) >= {"200", "401", "403", "422", "429", "502"}
    answer = document["components"]["schemas"]["Answer"]
    assert answer["required"] == ["output", "usage", "model"]
    assert answer["properties"]["output"] == {"$ref": "#/components/schemas/SentimentOutput"}
    assert document["components"]["schemas"]["SentimentOutput"]["properties"] == SENTIMENT_OUTPUT["properties"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert document["components"]["securitySchemes"]["PorticoKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert AuditEvent.objects.filter(action="version.published", object_id=str(version.pk)).exists()

    with pytest.raises(InvalidInput, match="frozen"):
        prompt_services.update_prompt(prompt, actor=alice, system_prompt="Changed")
    copy = prompt_services.create_prompt_version(
        version.api, actor=alice, version="v2", base_path="/sentiment/v2", route=route, copy_from=version
    )
    assert copy.user_template == prompt.user_template and copy.version.state == VersionState.DRAFT


def test_a_prompt_version_publishes_only_with_a_valid_prompt(alice, acme, route):
    prompt = sentiment_version(alice, acme, route)
    # Saved behind the service's back (an old row, a data migration): still refused.
    PromptVersion.objects.filter(pk=prompt.pk).update(user_template="{{ghost}}")
    with pytest.raises(InvalidInput, match="ghost"):
        lifecycle.publish_version(prompt.version, actor=alice)
    PromptVersion.objects.filter(pk=prompt.pk).delete()
    with pytest.raises(InvalidInput, match="no prompt"):
        lifecycle.publish_version(prompt.version, actor=alice)
    prompt.version.refresh_from_db()
    assert prompt.version.state == VersionState.DRAFT and prompt.version.openapi == {}


def test_deprecate_and_retire_as_for_rest(alice, acme, route):
    version = lifecycle.publish_version(sentiment_version(alice, acme, route).version, actor=alice)
    version = lifecycle.deprecate_version(version, actor=alice)
    assert version.state == VersionState.DEPRECATED and version.sunset_at
    version = lifecycle.retire_version(version, actor=alice)
    assert version.state == VersionState.RETIRED
    with pytest.raises(IllegalTransition):
        lifecycle.publish_version(version, actor=alice)


def test_text_mode_document_types_output_as_a_string(alice, acme, route):
    api = prompt_services.create_prompt_api(acme, actor=alice, slug="echo", name="Echo")
    prompt = prompt_services.create_prompt_version(api, actor=alice, version="v1", base_path="/echo/v1", route=route)
    document = lifecycle.publish_version(prompt.version, actor=alice).openapi
    validate(document)
    assert document["components"]["schemas"]["Answer"]["properties"]["output"]["type"] == "string"
    assert json.dumps(document)  # stored as JSON


def test_the_generated_document_cannot_be_replaced_through_the_rest_version_service(alice, acme, route):
    from portal.services import provider

    version = lifecycle.publish_version(sentiment_version(alice, acme, route).version, actor=alice)
    with pytest.raises(InvalidInput, match="generated"):
        provider.update_version(version, actor=alice, openapi={"openapi": "3.0.3", "paths": {}})
    with pytest.raises(InvalidInput, match="upstream"):
        provider.update_version(version, actor=alice, targets=[])
    version.refresh_from_db()
    assert version.openapi["openapi"] == "3.1.0"
