"""The authoring playground: run a (draft) prompt version once with sample input, from
Django, synchronously, and report everything the author wants to see.

It goes through the same parts as the gateway, not a copy of them: the spec, rendering,
validation and repair of ``llm.prompts``; the route's targets, fallbacks and usable keys
from ``llm.snapshot.build_ai_config()``; the order of attempts from ``llm.router.Router``;
request and answer translation by the provider adapters (``llm.providers``); the route's
PII policy (``llm.pii``); cost by ``llm.pricing``. Only the transport differs: a blocking
``requests`` call instead of the gateway's async pool, since a Django view is synchronous.

Nothing is billed or logged to the call log (a draft has no subscribers); provider errors
never raise: they come back as ``error_code``/``error_message``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import requests

from llm import pricing, tokens
from llm.canonical import AiRoute, InvalidRequest, Json, ModelTarget, ProviderError, Usage
from llm.pii import apply_policy, restore_completion
from llm.prompts import (
    FieldError,
    PromptSpec,
    RenderTooLarge,
    answer_text,
    chat_request,
    check_output,
    render,
    repair_request,
    spec_from_row,
    structured_output,
    validate_input,
)
from llm.providers import adapter_for
from llm.router import Router, falls_back

if TYPE_CHECKING:
    from llm.models import PromptVersion

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 8 * 1024 * 1024


@dataclass
class PlaygroundResult:
    system_prompt: str = ""  # as sent (rendered)
    user_prompt: str = ""
    output: Any = None  # the text, or the parsed JSON in JSON mode
    raw_output: str = ""  # the model's text as it came (the last attempt's)
    prompt_tokens: int = 0  # both attempts when a repair was made
    completion_tokens: int = 0
    cost_usd: Decimal | None = None  # None: a price is unknown
    latency_ms: float = 0.0
    model: str = ""  # the upstream model that answered
    provider: str = ""
    repaired: bool = False  # a first JSON answer did not conform and was repaired
    error_code: str = ""  # "" on success: invalid_prompt, invalid_input, model_unavailable, pii_blocked,
    # content_policy, invalid_request, invalid_model_output, provider_<kind>, no_provider, internal_error
    error_message: str = ""
    field_errors: list[FieldError] = field(default_factory=list)  # with invalid_input / invalid_model_output

    @property
    def ok(self) -> bool:
        return not self.error_code

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class _Failed(Exception):
    def __init__(self, code: str, message: str, errors: list[FieldError] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = errors or []


def run_draft(prompt_version: PromptVersion, inputs: dict[str, Any]) -> PlaygroundResult:
    """Render and run ``prompt_version`` (any state) on its model route with ``inputs``."""
    from llm.snapshot import build_ai_config

    started = time.perf_counter()
    result = PlaygroundResult()
    try:
        spec = spec_from_row(
            prompt_version, prompt_version.route.alias, version_id=getattr(prompt_version, "version_id", None)
        )
        if spec.broken:
            raise _Failed("invalid_prompt", spec.broken)
        errors = validate_input(spec, inputs)
        if errors:
            raise _Failed("invalid_input", "The input does not match the input schema.", errors)
        try:
            result.system_prompt, result.user_prompt = render(spec, inputs)
        except RenderTooLarge as too_large:
            raise _Failed("prompt_too_large", str(too_large)) from None
        route = build_ai_config().routes.get(spec.route_alias)
        if route is None or route.state == "retired":
            raise _Failed(
                "model_unavailable",
                f"The model route '{spec.route_alias}' is not served (its AI API has no published version).",
            )
        _run(spec, route, result)
    except _Failed as failure:
        result.error_code, result.error_message, result.field_errors = failure.code, failure.message, failure.errors
    except Exception:  # the playground reports; a bug here must not become the author's 500
        log.exception("playground run of prompt version %s failed", getattr(prompt_version, "pk", None))
        result.error_code, result.error_message = "internal_error", "The playground failed; this is logged."
    result.latency_ms = round((time.perf_counter() - started) * 1000, 1)
    return result


def _run(spec: PromptSpec, route: AiRoute, result: PlaygroundResult) -> None:
    request = chat_request(spec, result.system_prompt, result.user_prompt, structured=structured_output(route))
    router = Router()
    completion, usage, target = _complete(router, route, request)
    _spend(result, usage, target)
    text = answer_text(completion)
    if not spec.json_output:
        result.output = result.raw_output = text
        return
    value, problems = check_output(spec, text)
    if problems:
        result.repaired = True
        completion, usage, target = _complete(router, route, repair_request(request, text, problems))
        _spend(result, usage, target)
        text = answer_text(completion)
        value, problems = check_output(spec, text)
    result.raw_output = text
    if problems:
        raise _Failed("invalid_model_output", "The model's answer does not match the output schema.", problems)
    result.output = value


def _spend(result: PlaygroundResult, usage: Usage, target: ModelTarget) -> None:
    first = result.prompt_tokens == 0 and result.completion_tokens == 0 and not result.model
    result.prompt_tokens += usage.prompt_tokens
    result.completion_tokens += usage.completion_tokens
    cost = pricing.cost(usage, target.prices)
    if first:
        result.cost_usd = cost
    elif result.cost_usd is not None:
        result.cost_usd = None if cost is None else result.cost_usd + cost
    result.model, result.provider = target.upstream_model, target.provider_kind


def _complete(router: Router, route: AiRoute, request: Json) -> tuple[Json, Usage, ModelTarget]:
    """One completion through the route's attempts (targets, then fallbacks), as the
    gateway's ``AiCall.call_provider`` tries them."""
    pii = apply_policy(route.pii, request)
    if pii.refusal is not None:
        code = {"pii": "pii_blocked", "deny": "content_policy"}.get(pii.refusal.reason, "content_policy_invalid")
        raise _Failed(code, pii.refusal.message)
    upstream_request = pii.request
    attempts = router.attempts(route)
    last: ProviderError | None = None
    for target, key in attempts:
        outcome = _attempt(route, target, key, upstream_request)
        if isinstance(outcome, ProviderError):
            attempts.report(outcome)
            last = outcome
            if not falls_back(outcome):
                break
            continue
        attempts.report(None)
        completion = restore_completion(pii, outcome) if pii.mapping else outcome
        return completion, _usage(outcome, upstream_request), target
    if last is None:
        raise _Failed("no_provider", "No provider target or key is available for this model.")
    raise _Failed(f"provider_{last.kind}", last.message)


def _attempt(route: AiRoute, target: ModelTarget, key: Any, request: Json) -> Json | ProviderError:
    adapter = adapter_for(target.provider_kind)
    try:
        upstream = adapter.chat_request(target, key, request, False)
    except ProviderError as error:
        return error
    except InvalidRequest as invalid:  # this provider cannot take the request as built: no fallback helps
        raise _Failed("invalid_request", invalid.message) from None
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in upstream.headers}
    try:
        response = requests.request(
            upstream.method.decode(),
            upstream.url,
            data=upstream.body,
            headers=headers,
            timeout=(min(route.first_byte_timeout_seconds, 10.0), route.timeout_seconds),
            stream=True,
        )
    except requests.Timeout:
        return ProviderError("timeout", f"{target.provider_kind} did not answer in time")
    except requests.RequestException as error:
        # Logged in full; the author sees no address (requests names the host, port and path).
        log.warning("playground: cannot reach %s: %s", target.provider_kind, error)
        return ProviderError("connection", f"cannot reach {target.provider_kind} ({type(error).__name__})")
    try:
        body = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
    except Exception as error:  # noqa: BLE001 - any broken answer is the provider's failure
        log.warning("playground: %s broke off its answer: %s", target.provider_kind, error)
        return ProviderError("server", f"{target.provider_kind} broke off its answer ({type(error).__name__})")
    finally:
        response.close()
    if len(body) > MAX_ANSWER_BYTES:
        return ProviderError("server", "the provider's answer is too large")
    if response.status_code != 200:
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        return adapter.error(response.status_code, raw_headers, body)
    try:
        return adapter.chat_response(target, body)
    except ProviderError as error:
        return error


def _usage(completion: Json, request: Json) -> Usage:
    """As the gateway counts it (``AiCall.note_usage``): reported, else estimated and marked."""
    reported = Usage.from_openai(completion.get("usage"))
    if reported is not None:
        return reported
    return Usage(
        prompt_tokens=tokens.estimate_prompt_tokens(request),
        completion_tokens=tokens.estimate_text_tokens(answer_text(completion)),
        estimated=True,
    )
