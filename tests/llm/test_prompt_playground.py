"""llm.prompt_playground.run_draft against the real mock provider process: the rendered
prompt, the answer, tokens, cost and latency; JSON answers validated and repaired once;
input errors and provider failures come back as codes, never as exceptions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from llm.models import OutputMode
from llm.prompt_playground import run_draft
from portal.models import VersionState
from tests.llm.conftest import AiRouteFactory, MockLLM, Target
from tests.llm.prompt_apis import SENTIMENT_OUTPUT, model_route, prompt_api

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def factory(mock_llm: MockLLM, transactional_db: None) -> AiRouteFactory:
    mock_llm.reset()
    return AiRouteFactory(None, mock_llm)  # type: ignore[arg-type]  # no gateway: the playground calls providers itself


def test_a_draft_runs_on_its_route_with_tokens_cost_and_latency(factory, mock_llm):
    model = model_route(factory)
    built = prompt_api(factory, model, state=VersionState.DRAFT, subscribe=False)
    result = run_draft(built.prompt, {"text": "I love {{language}}", "language": "en"})
    assert result.ok, (result.error_code, result.error_message)
    assert result.system_prompt == "You classify sentiment."
    assert result.user_prompt == "Classify the sentiment of: I love {{language}} (language en)"
    [sent] = mock_llm.requests(kind="openai")
    assert sent["body"]["messages"][-1]["content"] == result.user_prompt
    assert sent["body"]["temperature"] == 0.0 and sent["body"]["max_tokens"] == 64
    said = MockLLM.answer_for(sent)
    assert result.output == said.text and result.raw_output == said.text
    assert (result.prompt_tokens, result.completion_tokens) == (said.prompt_tokens, said.completion_tokens)
    expected_cost = (Decimal("0.15") * said.prompt_tokens + Decimal("0.60") * said.completion_tokens) / 1_000_000
    assert result.cost_usd == expected_cost
    assert result.model == model.targets[0].upstream and result.provider == "openai"
    assert result.latency_ms > 0


def test_json_output_uses_structured_output_and_is_parsed(factory, mock_llm):
    model = model_route(factory, [Target("anthropic")])
    built = prompt_api(
        factory, model, output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT, state=VersionState.DRAFT
    )
    result = run_draft(built.prompt, {"text": "great", "language": "en"})
    assert result.ok, (result.error_code, result.error_message)
    assert result.output == {"label": "positive", "score": 1.5}
    assert not result.repaired
    [sent] = mock_llm.requests(kind="anthropic")
    assert sent["body"]["output_config"]["format"]["schema"] == SENTIMENT_OUTPUT


def test_a_non_conforming_answer_is_repaired_once(factory, mock_llm):
    model = model_route(factory)
    built = prompt_api(factory, model, output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT)
    mock_llm.faults("off_schema", times=1)
    result = run_draft(built.prompt, {"text": "great", "language": "en"})
    assert result.ok and result.repaired and result.output == {"label": "positive", "score": 1.5}
    first, second = mock_llm.requests(kind="openai")
    assert second["body"]["messages"][-2]["content"] == "Sure! The answer is positive, I think."
    assert "corrected JSON" in second["body"]["messages"][-1]["content"]
    spent = [MockLLM.answer_for(r) for r in (first, second)]
    assert result.prompt_tokens == sum(s.prompt_tokens for s in spent)


def test_a_repair_that_fails_is_invalid_model_output(factory, mock_llm):
    model = model_route(factory)
    built = prompt_api(factory, model, output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT)
    mock_llm.faults("off_schema", times=2, text='{"label": "ecstatic"}')
    result = run_draft(built.prompt, {"text": "great", "language": "en"})
    assert result.error_code == "invalid_model_output"
    assert [e.path for e in result.field_errors] == ["$.label"] or "$.label" in [e.path for e in result.field_errors]
    assert result.raw_output == '{"label": "ecstatic"}' and result.repaired
    assert len(mock_llm.requests(kind="openai")) == 2


def test_invalid_input_and_provider_errors_are_codes(factory, mock_llm):
    model = model_route(factory)
    built = prompt_api(factory, model, state=VersionState.DRAFT)
    result = run_draft(built.prompt, {"text": "", "language": "xx"})
    assert result.error_code == "invalid_input"
    assert {e.path for e in result.field_errors} == {"$.text", "$.language"}
    assert mock_llm.requests(kind="openai") == []
    mock_llm.faults("status", status=400, message="bad thing")
    result = run_draft(built.prompt, {"text": "ok", "language": "en"})
    assert result.error_code == "provider_invalid_request" and result.user_prompt


def test_a_route_whose_api_is_not_served_is_model_unavailable(factory):
    model = model_route(factory)
    built = prompt_api(factory, model, state=VersionState.DRAFT, subscribe=False)
    model.api.versions.update(state=VersionState.DRAFT)
    result = run_draft(built.prompt, {"text": "ok", "language": "en"})
    assert result.error_code == "model_unavailable"


def test_a_playground_run_answers_in_at_most_its_token_cap_whatever_the_version_asks(factory, mock_llm):
    # Playground runs are paid on the platform's provider keys with no tenant budget behind them.
    from llm.prompt_playground import PLAYGROUND_MAX_TOKENS

    model = model_route(factory)
    built = prompt_api(factory, model, state=VersionState.DRAFT, subscribe=False)
    built.prompt.max_tokens = 1_000_000
    built.prompt.save()
    result = run_draft(built.prompt, {"text": "hello", "language": "en"})
    assert result.ok, (result.error_code, result.error_message)
    built.prompt.max_tokens = None
    built.prompt.save()
    assert run_draft(built.prompt, {"text": "hello", "language": "en"}).ok
    first, second = mock_llm.requests(kind="openai")[-2:]
    assert {first["body"]["max_tokens"], second["body"]["max_tokens"]} == {PLAYGROUND_MAX_TOKENS}
