"""Prompt APIs attacked (issue 13 review), on the real gateway under gunicorn with the real
mock provider: schemas whose regular expressions would backtrack, and what a slow request
would do to the other requests of the same worker."""

from __future__ import annotations

import time

import orjson
import pytest
import requests

from llm.prompts import check_schema
from tests.llm.prompt_apis import PromptApiBuilt
from tests.llm.test_gateway_prompts import built_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

# A backreference after a nested quantifier: fancy-regex (jsonschema_rs's default engine)
# backtracks on it: 300k 'a's and a '!' took 0.3 s to is_valid and 4.5 s more to list the
# error, on the event loop.
BACKTRACKING = r"^(a+)+\1$"


def backtracking_schema(where: str) -> dict:
    if where == "pattern":
        text = {"type": "string", "pattern": BACKTRACKING}
        return {"type": "object", "required": ["text"], "properties": {"text": text}}
    return {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "patternProperties": {BACKTRACKING: {"type": "string"}},
    }


def post(gateway, built: PromptApiBuilt, data: bytes) -> requests.Response:
    headers = {"authorization": f"Bearer {built.key}", "content-type": "application/json"}
    return requests.post(gateway.url + built.base_path, data=data, headers=headers, timeout=60)


@pytest.mark.parametrize("where", ["pattern", "patternProperties"])
def test_a_backtracking_pattern_is_refused_at_save_time(where):
    [problem] = check_schema(backtracking_schema(where))
    assert "lookaround or backreferences" in problem
    assert check_schema({"type": "object", "properties": {"t": {"type": "string", "pattern": r"^\d+-\p{L}$"}}}) == []


@pytest.mark.parametrize("where", ["pattern", "patternProperties"])
def test_a_stored_backtracking_pattern_is_503_not_seconds_of_event_loop(ai_route, gateway, mock_llm, where):
    built = built_api(ai_route, input_schema=backtracking_schema(where), user_template="{{text}}")
    text = "a" * 300_000 + "!"  # longer ones hit the engine's stack limit sooner
    data = orjson.dumps({"text": text} if where == "pattern" else {"text": "x", text: "y"})
    started = time.monotonic()
    response = post(gateway, built, data)
    elapsed = time.monotonic() - started
    # Before: validated with the backtracking engine (a 422 after seconds, twice: is_valid
    # and iter_errors), holding the worker's event loop all along.
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "prompt_unavailable"
    assert elapsed < 2.0
    assert mock_llm.requests(kind="openai") == []
