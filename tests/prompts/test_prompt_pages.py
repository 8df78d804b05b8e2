"""The prompt authoring pages over HTTP: an owner writes, checks and publishes a prompt;
bad JSON and bad prompts are errors beside their fields (400, never 500); another team's
developer, and a plain member of the owning team, get 404 for every page and change."""

from __future__ import annotations

import json

import pytest

from llm.models import PromptApi, PromptVersion
from portal.models import Membership, Role, VersionState
from tests.prompts.builders import SENTIMENT_INPUT, SENTIMENT_OUTPUT, live_route, sentiment_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def route(staff, publisher):
    return live_route(staff, publisher)


@pytest.fixture
def prompt(alice, acme, route):
    return sentiment_version(alice, acme, route)


def page(prompt: PromptVersion, what: str = "prompt") -> str:
    return f"/provider/apis/{prompt.version.api.slug}/versions/{prompt.version_id}/{what}/"


def prompt_post(route, **overrides):
    data = {
        "route": route.alias,
        "system_prompt": "Classify the sentiment.",
        "user_template": "Text: {{text}}",
        "input_schema": json.dumps(SENTIMENT_INPUT),
        "output_mode": "json",
        "output_schema": json.dumps(SENTIMENT_OUTPUT),
        "temperature": "0",
        "max_tokens": "40",
    }
    data.update(overrides)
    return data


def test_an_owner_creates_a_prompt_api_and_a_version_from_the_pages(client, alice, acme, route):
    client.force_login(alice)
    response = client.post(
        "/provider/prompt-apis/new/",
        {"tenant": acme.pk, "name": "Translate", "slug": "translate", "visibility": "public"},
    )
    assert response.status_code == 302 and response["Location"] == "/provider/apis/translate/"
    assert PromptApi.objects.get(slug="translate").owner == acme
    detail = client.get("/provider/apis/translate/")
    assert b"Model route" in detail.content and route.alias.encode() in detail.content
    response = client.post(
        "/provider/apis/translate/prompt-versions/",
        {"version": "v1", "base_path": "/translate/v1", "route": route.alias},
    )
    prompt = PromptVersion.objects.get(version__api__slug="translate")
    assert response.status_code == 302 and response["Location"] == page(prompt)
    assert prompt.version.state == VersionState.DRAFT and prompt.route == route


def test_editing_saves_through_the_service(client, alice, prompt, route):
    client.force_login(alice)
    response = client.post(page(prompt), prompt_post(route, user_template="Say: {{text}} in {{language}}"))
    assert response.status_code == 302
    prompt.refresh_from_db()
    assert prompt.user_template == "Say: {{text}} in {{language}}" and prompt.max_tokens == 40


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_schema", "{not json", "not valid JSON"),
        ("input_schema", "[" * 100_000 + "]" * 100_000, "Keep this under 65,536 characters"),
        ("input_schema", "[" * 20_000 + "]" * 20_000, "nests too deeply"),
        ("input_schema", '["a list"]', "JSON object"),
        ("input_schema", '{"type": "object", "properties": {"text": {"$ref": "http://169.254.169.254/x"}}}', "local"),
        ("output_schema", "", "JSON output needs"),
        ("user_template", "{{ghost}}", "not a property"),
        ("system_prompt", "You are {{text}}", "no placeholders"),
        ("temperature", "9", "less than or equal to 2"),
        # JSON's \u0000 is a NUL once parsed: PostgreSQL refuses it at save (a 500).
        ("input_schema", '{"type": "object", "properties": {"text": {"description": "a\\u0000"}}}', "NUL"),
        ("output_schema", '{"type": "object", "properties": {"a\\u0000": {"type": "string"}}}', "NUL"),
    ],
)
def test_bad_input_is_an_inline_error_never_a_500(client, alice, prompt, route, field, value, message):
    client.force_login(alice)
    response = client.post(page(prompt), prompt_post(route, **{field: value}))
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert f'id="id_{field}_errors"' in html  # beside its own field
    prompt.refresh_from_db()
    assert prompt.user_template == "Text ({{language}}): {{text}}"


def test_the_prompt_page_prefills_the_playground_with_the_generated_example(client, alice, prompt):
    client.force_login(alice)
    html = client.get(page(prompt)).content.decode()
    assert "I love this product." in html and "&quot;language&quot;: &quot;en&quot;" in html


def test_publishing_from_the_page_freezes_the_prompt_and_the_docs_serve_the_document(
    client, alice, charlie, globex, prompt, route
):
    client.force_login(alice)
    response = client.post(f"/provider/apis/sentiment/versions/{prompt.version_id}/publish/")
    assert response.status_code == 302
    prompt.version.refresh_from_db()
    assert prompt.version.state == VersionState.PUBLISHED
    html = client.get(page(prompt)).content.decode()
    assert "frozen" in html and "Save prompt" not in html
    response = client.post(page(prompt), prompt_post(route, system_prompt="Changed"))
    assert response.status_code == 400 and "frozen" in response.content.decode()
    # The catalog shows it, the docs page renders the reference, and the document is served
    # with the gateway as its server, the operation at the whole base path.
    assert b"Sentiment" in client.get("/").content
    docs = client.get("/apis/sentiment/v1/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    document = client.get("/apis/sentiment/v1/openapi.json").json()
    from django.conf import settings
    from openapi_spec_validator import validate

    validate(document)
    # The template stays the team's: neither the published document nor the pages show it.
    assert "Classify the sentiment" not in json.dumps(document) and "Text ({{language}})" not in json.dumps(document)
    client.force_login(charlie)
    for url in ("/apis/sentiment/", "/apis/sentiment/v1/docs/", "/apis/sentiment/v1/openapi.json"):
        response = client.get(url)
        assert response.status_code == 200 and b"Classify the sentiment" not in response.content
    assert document["servers"] == [{"url": settings.PORTICO_GATEWAY_URL.rstrip("/")}]
    assert list(document["paths"]) == ["/sentiment/v1"]


def test_another_teams_developer_cannot_see_or_edit_the_template(client, charlie, globex, prompt, route):
    client.force_login(charlie)
    for url in (page(prompt), "/provider/apis/sentiment/"):
        response = client.get(url)
        assert response.status_code == 404
        assert b"Classify the sentiment" not in response.content
    assert client.post(page(prompt), prompt_post(route, system_prompt="pwned")).status_code == 404
    assert client.post(page(prompt, "playground"), {"inputs": "{}"}).status_code == 404
    assert (
        client.post(
            "/provider/apis/sentiment/prompt-versions/", {"version": "v9", "base_path": "/x/v9", "route": route.alias}
        ).status_code
        == 404
    )
    assert client.post(f"/provider/apis/sentiment/versions/{prompt.version_id}/publish/").status_code == 404
    prompt.refresh_from_db()
    assert prompt.system_prompt.startswith("Classify") and prompt.version.state == VersionState.DRAFT


def test_a_plain_member_of_the_owning_team_gets_404_too(client, bob, vera, prompt, route):
    assert Membership.objects.get(user=bob).role == Role.DEVELOPER
    for person in (bob, vera):
        client.force_login(person)
        assert client.get(page(prompt)).status_code == 404
        assert client.post(page(prompt), prompt_post(route, system_prompt="pwned")).status_code == 404
    prompt.refresh_from_db()
    assert prompt.system_prompt.startswith("Classify")


def test_a_rest_api_is_not_edited_as_a_prompt(client, alice, acme):
    from portal.services import provider

    provider.create_api(acme, actor=alice, slug="maps", name="Maps")
    client.force_login(alice)
    assert client.post("/provider/apis/maps/prompt-versions/", {"version": "v1"}).status_code == 404


def test_deprecate_with_a_sunset_then_retire_from_the_api_page(client, alice, prompt):
    from datetime import timedelta

    from django.utils import timezone

    client.force_login(alice)
    base = f"/provider/apis/sentiment/versions/{prompt.version_id}"
    client.post(f"{base}/publish/")
    sunset = (timezone.now() + timedelta(days=60)).strftime("%Y-%m-%d %H:%M")
    assert client.post(f"{base}/deprecate/", {"sunset_at": sunset, "reason": "v2 is better"}).status_code == 302
    prompt.version.refresh_from_db()
    assert prompt.version.state == VersionState.DEPRECATED and prompt.version.sunset_at is not None
    page = client.get("/provider/apis/sentiment/").content.decode()
    assert "View prompt" in page and "Retire v1" in page
    client.post(f"{base}/retire/")
    prompt.version.refresh_from_db()
    assert prompt.version.state == VersionState.RETIRED
