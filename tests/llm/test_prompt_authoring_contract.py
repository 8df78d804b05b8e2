"""What authoring publishes is what the real gateway serves: a prompt API written through
``llm.prompt_services`` and published through ``lifecycle`` (which generates its OpenAPI
document) answers the document's own example with a 200 whose body satisfies the document's
200 schema, and a bad body with a 422 satisfying its 422 schema; a draft is not served."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest
import requests

from llm import prompt_services
from portal.models import Application, Membership, Role, Tenant
from portal.services import keys, lifecycle, provider, subscriptions
from tests.conftest import make_user
from tests.llm.conftest import AiRouteFactory
from tests.llm.prompt_apis import model_route
from tests.prompts.builders import SENTIMENT_INPUT, SENTIMENT_OUTPUT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


def response_schema(document: dict[str, Any], status: str) -> dict[str, Any]:
    """The JSON schema of a response, resolvable against the document's components."""
    content = document["paths"]["/tone/v1"]["post"]["responses"][status]["content"]["application/json"]
    return {**content["schema"], "components": document["components"]}


def test_the_published_document_describes_what_the_gateway_answers(ai_route: AiRouteFactory, gateway, mock_llm):
    model = model_route(ai_route)
    owner = make_user("tone-owner")
    team = Tenant.objects.create(name="Tone team", slug="tone-team")
    Membership.objects.create(user=owner, tenant=team, role=Role.OWNER)
    api = prompt_services.create_prompt_api(team, actor=owner, slug="tone", name="Tone")
    prompt = prompt_services.create_prompt_version(
        api,
        actor=owner,
        version="v1",
        base_path="/tone/v1",
        route=model.route,
        system_prompt="Classify the sentiment.",
        user_template="{{text}} ({{language}})",
        input_schema=SENTIMENT_INPUT,
        output_mode="json",
        output_schema=SENTIMENT_OUTPUT,
        temperature=0.0,
        max_tokens=40,
    )
    plan = provider.create_plan(api, actor=owner, name="Free")
    app = Application.objects.create(tenant=team, name="tone client")
    key, secret = keys.create_api_key(app, actor=owner)
    headers = {"x-api-key": secret, "content-type": "application/json"}
    url = gateway.url + "/tone/v1"
    gateway.wait_for_config()
    assert requests.post(url, data=b"{}", headers=headers, timeout=10).status_code == 404  # a draft is not served

    version = lifecycle.publish_version(prompt.version, actor=owner)
    subscriptions.request_subscription(app, api, plan, actor=owner)
    gateway.wait_for_config()
    document = version.openapi
    example = document["paths"]["/tone/v1"]["post"]["requestBody"]["content"]["application/json"]["example"]

    response = requests.post(url, data=orjson.dumps(example), headers=headers, timeout=15)
    assert response.status_code == 200, response.text
    jsonschema.Draft202012Validator(response_schema(document, "200")).validate(response.json())
    assert response.json()["output"]["sentiment"] in ("positive", "neutral", "negative")

    response = requests.post(url, data=orjson.dumps({"text": "", "language": "xx"}), headers=headers, timeout=15)
    assert response.status_code == 422
    jsonschema.Draft202012Validator(response_schema(document, "422")).validate(response.json())
    assert {f["path"] for f in response.json()["error"]["fields"]} >= {"$.text", "$.language"}

    response = requests.post(url, data=orjson.dumps({**example, "stream": True}), headers=headers, timeout=15)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert "text/event-stream" in document["paths"]["/tone/v1"]["post"]["responses"]["200"]["content"]
