"""The playground page runs a draft on the real mock provider process (through
llm.prompt_playground.run_draft) and shows the rendered prompt, the output, tokens, cost and
latency; bad samples are inline errors; runs are limited per person."""

from __future__ import annotations

import html
import json
import re

import pytest

from llm import prompt_services
from llm import services as llm_services
from tests.llm import factories
from tests.llm.conftest import MockLLM
from tests.portal.ratelimit_helpers import clear_counters
from tests.prompts.builders import sentiment_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def route(staff, publisher, mock_llm: MockLLM):
    mock_llm.reset()
    api = factories.ai_api(publisher, staff, slug="llm")
    provider = llm_services.create_provider(
        actor=staff, name="mock openai", kind="openai", base_url=mock_llm.base_url("openai")
    )
    llm_services.add_key(provider, actor=staff, secret="sk-test-000000000001", label="t")
    model = factories.model(staff, provider, capabilities=["chat", "json"])  # structured output
    return factories.route(staff, api, "gpt-4o-mini", [model])


def url(prompt) -> str:
    return f"/provider/apis/{prompt.version.api.slug}/versions/{prompt.version_id}/playground/"


def test_a_text_draft_runs_and_shows_prompt_output_tokens_cost_latency(client, alice, acme, route, mock_llm):
    api = prompt_services.create_prompt_api(acme, actor=alice, slug="translate", name="Translate")
    prompt = prompt_services.create_prompt_version(
        api,
        actor=alice,
        version="v1",
        base_path="/translate/v1",
        route=route,
        system_prompt="Translate into French.",
        user_template="Translate: {{text}}",
        max_tokens=30,
    )
    client.force_login(alice)
    # A value that looks like a placeholder stays data: rendered once, never re-scanned.
    response = client.post(url(prompt), {"inputs": json.dumps({"text": "Good morning {{text}}"})})
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    [sent] = mock_llm.requests(kind="openai")
    assert sent["body"]["messages"][-1]["content"] == "Translate: Good morning {{text}}"
    said = MockLLM.answer_for(sent)
    assert "Translate: Good morning {{text}}" in page and "Translate into French." in page
    assert said.text in page
    assert f"{said.prompt_tokens} in · {said.completion_tokens} out" in page
    assert 'id="playground-cost">$0.0' in page and " ms</dd>" in page


def test_a_json_draft_shows_the_parsed_output(client, alice, acme, route, mock_llm):
    prompt = sentiment_version(alice, acme, route)
    client.force_login(alice)
    response = client.post(url(prompt), {"inputs": json.dumps({"text": "I love it", "language": "en"})})
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert "playground-error" not in page
    shown = json.loads(re.search(r'<pre id="playground-output">(.*?)</pre>', page, re.S).group(1))
    assert shown["sentiment"] in ("positive", "neutral", "negative")


def test_invalid_samples_are_shown_by_path_and_bad_json_inline(client, alice, acme, route, mock_llm):
    prompt = sentiment_version(alice, acme, route)
    client.force_login(alice)
    response = client.post(url(prompt), {"inputs": json.dumps({"text": "", "language": "xx", "extra": 1})})
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert "invalid_input" in page and "$.text" in page and "$.language" in page
    assert mock_llm.requests(kind="openai") == []  # nothing was sent to the model
    response = client.post(url(prompt), {"inputs": "{oops"})
    assert response.status_code == 400 and "not valid JSON" in response.content.decode()


def test_playground_runs_are_limited_per_person(client, alice, acme, route, redis_client):
    clear_counters(redis_client)
    prompt = sentiment_version(alice, acme, route)
    client.force_login(alice)
    statuses = [client.post(url(prompt), {"inputs": "not json"}).status_code for _ in range(31)]
    assert statuses[:30] == [400] * 30 and statuses[30] == 429
    clear_counters(redis_client)


def test_playground_runs_are_limited_per_team_whoever_runs_them(client, alice, acme, route, redis_client, mock_llm):
    # Each owner or admin has 30 runs an hour; the team that owns the prompt API has 60 in
    # all, so adding admins does not multiply what it spends on the platform's provider keys.
    from portal.models import Membership, Role
    from tests.conftest import make_user

    clear_counters(redis_client)
    prompt = sentiment_version(alice, acme, route)
    admins = [alice]
    for name in ("dana", "erin"):
        person = make_user(name)
        Membership.objects.create(user=person, tenant=acme, role=Role.ADMIN)
        admins.append(person)
    sample = {"inputs": json.dumps({"text": ""})}  # refused by the input schema: no model call
    statuses = []
    for number, person in enumerate(admins):
        client.force_login(person)
        address = f"10.0.0.{number + 1}"  # one address each: the per-address limit is not the one hit
        statuses += [client.post(url(prompt), sample, REMOTE_ADDR=address).status_code for _ in range(21)]
    assert statuses[:60] == [200] * 60
    refused = client.post(url(prompt), sample, REMOTE_ADDR="10.0.0.3")
    assert statuses[60:] == [429, 429, 429] and refused.status_code == 429
    assert "Your team has used its playground runs" in refused.content.decode()
    assert mock_llm.requests(kind="openai") == []
    clear_counters(redis_client)


def test_an_unreachable_provider_is_named_but_its_address_is_not_shown(client, alice, acme, staff, publisher):
    # The playground is a team's page; the provider's address (an internal host, a path with
    # a deployment name) is the platform's. The author learns the provider could not be
    # reached, as the gateway's callers do, not where it lives.
    from portal.embedded_redis import free_port

    port = free_port()
    api = factories.ai_api(publisher, staff, slug="llm")
    provider = llm_services.create_provider(
        actor=staff, name="internal", kind="openai", base_url=f"http://127.0.0.1:{port}/internal-deployment/v1"
    )
    llm_services.add_key(provider, actor=staff, secret="sk-test-000000000002", label="t")
    route = factories.route(staff, api, "internal-model", [factories.model(staff, provider)])
    prompt = sentiment_version(alice, acme, route)
    client.force_login(alice)
    response = client.post(url(prompt), {"inputs": json.dumps({"text": "I love it", "language": "en"})})
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert "provider_connection" in page and "cannot reach openai" in page
    assert str(port) not in page and "internal-deployment" not in page
