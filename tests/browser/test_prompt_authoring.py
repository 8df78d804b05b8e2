"""A team owner authors a prompt API in a real browser, against the real mock provider:

the owner of Wordsmiths creates the "Tone Check" prompt API, a v1 version on a model route,
writes its template and schemas (a malformed schema is refused beside its field), runs the
draft in the playground (the rendered prompt, the output, tokens, cost and latency come from
a real call to the mock provider process), adds a plan and publishes; then finds the API in
the catalog and opens its generated reference docs.

Screenshots land in test-artifacts/screenshots/prompt-*.png.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from llm import services as llm_services
from llm.models import PromptVersion
from portal.models import Membership, Role, Tenant, VersionState
from tests.conftest import PASSWORD, make_user
from tests.llm import factories
from tests.llm.conftest import start_mock, stop_process

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 1000, "examples": ["Thanks a lot, this was great!"]},
        "audience": {"type": "string", "enum": ["customer", "colleague"]},
    },
    "required": ["text"],
    "additionalProperties": False,
}
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {"tone": {"type": "string", "enum": ["friendly", "neutral", "rude"]}},
    "required": ["tone"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def mock_provider():
    mock = start_mock()
    yield mock
    mock.http.close()
    stop_process(mock.process)


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(username, exact=True).first).to_be_visible()


def test_an_owner_authors_runs_and_publishes_a_prompt_api_then_finds_it_in_the_catalog(
    live_server, mock_provider, new_page, screenshot
):
    # The platform: a published AI API whose route runs on the real mock provider process.
    mock_provider.reset()
    staff = make_user("platform", staff=True)
    platform = Tenant.objects.create(name="Platform", slug="platform")
    ai = factories.ai_api(platform, staff, slug="platform-llm")
    provider = llm_services.create_provider(
        actor=staff, name="Mock OpenAI", kind="openai", base_url=mock_provider.base_url("openai")
    )
    llm_services.add_key(provider, actor=staff, secret="sk-browser-000000000001", label="demo")
    model = factories.model(staff, provider, capabilities=["chat", "json"])
    factories.route(staff, ai, "gpt-4o-mini", [model])
    wordsmiths = Tenant.objects.create(name="Wordsmiths", slug="wordsmiths")
    priya = make_user("priya")
    Membership.objects.create(user=priya, tenant=wordsmiths, role=Role.OWNER)

    page = new_page()
    log_in(page, live_server.url, "priya")
    page.get_by_role("link", name="Your APIs").click()
    page.get_by_role("link", name="Create a prompt API").click()
    page.fill("input[name=name]", "Tone Check")
    page.fill("input[name=slug]", "tone-check")
    page.fill("textarea[name=description]", "Is a message friendly, neutral or rude?")
    screenshot(page, "prompt-01-new-prompt-api")
    page.get_by_role("button", name="Create prompt API").click()
    expect(page.get_by_role("heading", name="Tone Check", level=1)).to_be_visible()

    # A version on the model route.
    page.fill("#new-version input[name=version]", "v1")
    page.fill("#new-version input[name=base_path]", "/tone-check/v1")
    page.select_option("#new-version select[name=route]", "gpt-4o-mini")
    screenshot(page, "prompt-02-new-version")
    page.get_by_role("button", name="Create version").click()
    expect(page.get_by_text("Version v1 created as a draft")).to_be_visible()

    # The template and schemas; a malformed schema first, refused beside its field.
    page.fill("textarea[name=system_prompt]", "You judge the tone of workplace messages. Answer with JSON.")
    page.fill("textarea[name=user_template]", "Message to a {{audience}}:\n{{text}}")
    page.fill("textarea[name=input_schema]", '{"type": "object", "properties": {"text": ')
    page.get_by_role("button", name="Save prompt").click()
    expect(page.locator("#id_input_schema_errors")).to_contain_text("not valid JSON")
    screenshot(page, "prompt-03-inline-error")
    page.fill("textarea[name=input_schema]", json.dumps(INPUT_SCHEMA, indent=2))
    page.select_option("select[name=output_mode]", "json")
    page.fill("textarea[name=output_schema]", json.dumps(OUTPUT_SCHEMA, indent=2))
    page.fill("input[name=temperature]", "0")
    page.fill("input[name=max_tokens]", "60")
    page.get_by_role("button", name="Save prompt").click()
    expect(page.get_by_text("The prompt of v1 is saved.")).to_be_visible()
    screenshot(page, "prompt-04-saved")

    # The playground: prefilled with the example generated from the input schema; a real run.
    sample = json.loads(page.input_value("textarea[name=inputs]"))
    assert sample == {"text": "Thanks a lot, this was great!", "audience": "customer"}
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#rendered-user")).to_have_text("Message to a customer:\nThanks a lot, this was great!")
    output = json.loads(page.locator("#playground-output").inner_text())
    assert output["tone"] in ("friendly", "neutral", "rude")
    expect(page.locator("#playground-tokens")).to_contain_text(" in · ")
    expect(page.locator("#playground-cost")).to_contain_text("$")
    expect(page.locator("#playground-latency")).to_contain_text(" ms")
    [sent] = mock_provider.requests(kind="openai")
    assert sent["body"]["messages"][-1]["content"] == "Message to a customer:\nThanks a lot, this was great!"
    page.locator("#playground").scroll_into_view_if_needed()
    screenshot(page, "prompt-05-playground")

    # A plan, then publish from the prompt page.
    page.get_by_role("link", name="Tone Check").first.click()
    page.fill("#new-plan input[name=name]", "Free")
    page.fill("#new-plan input[name=requests_per_minute]", "60")
    page.get_by_role("button", name="Create plan").click()
    expect(page.get_by_text("Plan Free created.")).to_be_visible()
    page.get_by_role("link", name="Edit prompt of v1").click()
    page.get_by_role("button", name="Publish v1").click()
    expect(page.get_by_text("Version v1: publish done.")).to_be_visible()
    expect(page.locator(".badge.published")).to_have_text("Published")
    screenshot(page, "prompt-06-published")
    prompt = PromptVersion.objects.select_related("version").get(version__api__slug="tone-check")
    assert prompt.version.state == VersionState.PUBLISHED and prompt.output_schema == OUTPUT_SCHEMA
    assert prompt.version.openapi["paths"]["/tone-check/v1"]["post"]

    # The catalog lists it; its docs render the generated reference.
    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name="Tone Check").first.click()
    expect(page.get_by_role("heading", name="Tone Check", level=1)).to_be_visible()
    screenshot(page, "prompt-07-catalog-page")
    page.goto(f"{live_server.url}/apis/tone-check/v1/docs/")
    operation = page.locator(".opblock-summary", has_text="/tone-check/v1")
    expect(operation).to_be_visible()
    operation.click()
    expect(page.locator(".opblock-body")).to_contain_text("Thanks a lot, this was great!")
    screenshot(page, "prompt-08-docs")
