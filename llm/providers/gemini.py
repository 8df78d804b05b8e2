"""Google Gemini API (``{base}/v1beta/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse``, ``:batchEmbedContents``; key in ``x-goog-api-key``).

Requests from canonical:
- roles ``user`` and ``model``; system (and developer) messages → ``systemInstruction``;
  consecutive same-role turns merged (parallel function responses belong in one turn).
- assistant ``tool_calls`` → ``functionCall`` parts; tool results → ``functionResponse``
  parts in a user turn, named after the call they answer (Gemini pairs by name; the OpenAI
  result only carries the call id, so the name is looked up in the earlier assistant turn).
  A result that is a JSON object is sent as the response; anything else as
  ``{"output": text}`` (the key Gemini documents for a function's output).
- thought signatures: Gemini 3 requires the ``thoughtSignature`` it returned with a function
  call to come back with it. It travels in the tool call as
  ``extra_content.google.thought_signature`` (the place Google's own OpenAI layer uses); a
  history without one (another provider's, or a client that dropped it) gets the documented
  ``skip_thought_signature_validator`` on the turn's first call, for models after 2.x.
- images: data URLs → ``inlineData``; http(s) URLs → ``fileData`` (``fileUri``, with a MIME
  type guessed from the path when it can be), which Gemini fetches itself.
- tools → one ``functionDeclarations`` tool, JSON Schema parameters as
  ``parametersJsonSchema`` (Gemini's ``parameters`` accepts only an OpenAPI subset and
  rejects e.g. ``additionalProperties``, which OpenAI strict schemas always carry);
  ``tool_choice`` → ``toolConfig.functionCallingConfig`` (AUTO / ANY / NONE, a named function
  → ANY with ``allowedFunctionNames``).
- ``response_format``: ``json_object`` → ``responseMimeType: application/json``;
  ``json_schema`` → that plus the schema as ``responseJsonSchema`` (full JSON Schema, same
  reason as for tools).
- temperature, top_p, max tokens, stop, n, seed, presence/frequency penalties →
  ``generationConfig``.

Answers: text parts (not ``thought`` parts) → content; ``functionCall`` parts → tool calls
with their ``id`` if Gemini gave one, else a stable generated id; finish reasons by
``finish_reason``; usage: prompt = promptTokenCount (already includes cached tokens) +
toolUsePromptTokenCount, cached = cachedContentTokenCount, completion = candidatesTokenCount
+ thoughtsTokenCount (thinking is billed as output). A prompt blocked before any candidate
(``promptFeedback.blockReason``) is an empty answer with ``content_filter``.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from llm.canonical import InvalidRequest, Json, ModelTarget, ProviderError, ProviderKey, UpstreamRequest, Usage
from llm.providers import common
from llm.providers.openai import secret_header
from llm.sse import SSEError, SSEParser

API_VERSION = "v1beta"
SKIP_SIGNATURE = "skip_thought_signature_validator"
_NO_SIGNATURE_NEEDED = re.compile(r"(models/)?gemini-(1|2)(\.|-)")

CONTENT_FILTER_REASONS = frozenset(
    {
        "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
        "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
    }
)  # fmt: skip

_STATUS_KINDS = {
    "INVALID_ARGUMENT": "invalid_request",
    "FAILED_PRECONDITION": "invalid_request",
    "UNAUTHENTICATED": "authentication",
    "PERMISSION_DENIED": "permission",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "rate_limited",
    "INTERNAL": "server",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
}


def finish_reason(reason: Any, has_function_call: bool) -> str:
    """STOP → stop (tool_calls when the candidate called functions), MAX_TOKENS → length,
    the safety family → content_filter; everything else (OTHER, LANGUAGE,
    MALFORMED_FUNCTION_CALL, ...) → stop, the only other value OpenAI clients know."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in CONTENT_FILTER_REASONS:
        return "content_filter"
    if has_function_call:
        return "tool_calls"
    return "stop"


def usage_from_gemini(metadata: Any) -> Usage | None:
    if not isinstance(metadata, dict):
        return None
    return Usage(
        prompt_tokens=common.as_int(metadata.get("promptTokenCount"))
        + common.as_int(metadata.get("toolUsePromptTokenCount")),
        completion_tokens=common.as_int(metadata.get("candidatesTokenCount"))
        + common.as_int(metadata.get("thoughtsTokenCount")),
        cached_tokens=common.as_int(metadata.get("cachedContentTokenCount")),
    )


def error_from_object(error: Any, status: int = 0) -> ProviderError:
    """A google.rpc.Status (``{"code", "message", "status", "details"}``)."""
    error_obj = common.as_dict(error)
    message = common.as_str(error_obj.get("message")) or "the provider reported an error"
    code = error_obj.get("code")
    http_status = status or (code if isinstance(code, int) and not isinstance(code, bool) else 0)
    kind = _STATUS_KINDS.get(common.as_str(error_obj.get("status"))) or common.kind_for_status(http_status)
    return ProviderError(_refine(kind, error_obj, message), message, status=http_status)


def _refine(kind: str, error: Json, message: str) -> str:
    if kind == "invalid_request":
        # A bad key is a 400 INVALID_ARGUMENT with reason API_KEY_INVALID: it is the key's fault.
        reasons = {common.as_str(common.as_dict(d).get("reason")) for d in common.as_list(error.get("details"))}
        if "API_KEY_INVALID" in reasons or "api key not valid" in message.lower():
            return "authentication"
        if common.looks_like_context_length(message):
            return "context_length"
    return kind


def _retry_delay(error: Json) -> float | None:
    """``details[].retryDelay`` of a RESOURCE_EXHAUSTED error (google.rpc.RetryInfo, "32s")."""
    for detail in common.as_list(error.get("details")):
        delay = common.as_str(common.as_dict(detail).get("retryDelay"))
        if delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                continue
            if 0 <= seconds < 7 * 86400:
                return seconds
    return None


class _Answer:
    """Reads one GenerateContentResponse (a whole answer or one stream chunk)."""

    def __init__(self, payload: Json) -> None:
        self.payload = payload
        self.candidates = [common.as_dict(c) for c in common.as_list(payload.get("candidates"))]

    @staticmethod
    def parts(candidate: Json) -> list[Json]:
        return [common.as_dict(p) for p in common.as_list(common.as_dict(candidate.get("content")).get("parts"))]

    @staticmethod
    def text(parts: list[Json]) -> str:
        return "".join(common.as_str(p.get("text")) for p in parts if "text" in p and not p.get("thought"))

    @staticmethod
    def tool_call(part: Json, ordinal: int, candidate_index: int) -> Json:
        call = common.as_dict(part.get("functionCall"))
        name = common.as_str(call.get("name"))
        arguments = orjson.dumps(common.as_dict(call.get("args")), option=orjson.OPT_SORT_KEYS).decode()
        call_id = common.as_str(call.get("id")) or common.stable_call_id(
            str(candidate_index), str(ordinal), name, arguments
        )
        out: Json = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        signature = part.get("thoughtSignature")
        if isinstance(signature, str) and signature:
            out["extra_content"] = {"google": {"thought_signature": signature}}
        return out


class GeminiAdapter:
    kind = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"

    def _url(self, target: ModelTarget, method: str) -> str:
        model = target.upstream_model.removeprefix("models/")
        return common.join_url(
            target.base_url or self.default_base_url, f"/{API_VERSION}/models/{quote(model, safe='')}:{method}"
        )

    def _headers(self, key: ProviderKey) -> tuple[tuple[bytes, bytes], ...]:
        return common.JSON_HEADERS + ((b"x-goog-api-key", secret_header(key.secret)),)

    # -- chat request ----------------------------------------------------------------------------

    def chat_request(self, target: ModelTarget, key: ProviderKey, request: Json, stream: bool) -> UpstreamRequest:
        body = self.chat_body(target, request)
        url = self._url(target, "streamGenerateContent?alt=sse" if stream else "generateContent")
        return UpstreamRequest(b"POST", url, self._headers(key), common.dumps(body))

    def chat_body(self, target: ModelTarget, request: Json) -> Json:
        needs_signature = not _NO_SIGNATURE_NEEDED.match(target.upstream_model)
        system: list[str] = []
        contents: list[Json] = []
        call_names: dict[str, str] = {}
        for message in common.messages_of(request):
            role = message.get("role")
            if role in ("system", "developer"):
                text = common.content_text(message.get("content"))
                if text:
                    system.append(text)
                continue
            if role == "user":
                parts = self._user_parts(message.get("content"))
            elif role == "assistant":
                role = "model"
                parts = self._model_parts(message, call_names, needs_signature)
            elif role == "tool":
                role = "user"
                parts = [self._function_response(message, call_names)]
            else:
                raise InvalidRequest(f"unsupported message role {role!r}", param="messages")
            if not parts:
                continue
            if contents and contents[-1]["role"] == role:
                contents[-1]["parts"].extend(parts)
            else:
                contents.append({"role": role, "parts": parts})
        body: Json = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
        config = self._generation_config(request)
        if config:
            body["generationConfig"] = config
        self._tools(request, body)
        return body

    def _user_parts(self, content: Any) -> list[Json]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"text": content}] if content else []
        if not isinstance(content, list):
            raise InvalidRequest("message content must be a string or a list of parts", param="messages")
        parts: list[Json] = []
        for part in content:
            part = common.as_dict(part)
            kind = part.get("type")
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise InvalidRequest("a text part needs a text string", param="messages")
                if text:
                    parts.append({"text": text})
            elif kind == "image_url":
                image = part.get("image_url")
                url = image if isinstance(image, str) else common.as_str(common.as_dict(image).get("url"))
                parts.append(self._media(url))
            elif kind == "file":
                parts.append(self._media(common.as_str(common.as_dict(part.get("file")).get("file_data"))))
            elif kind == "input_audio":
                audio = common.as_dict(part.get("input_audio"))
                audio_format = common.as_str(audio.get("format")) or "wav"
                parts.append(
                    {"inlineData": {"mimeType": f"audio/{audio_format}", "data": common.as_str(audio.get("data"))}}
                )
            else:
                raise InvalidRequest(f"this model does not take {kind!r} content parts", param="messages")
        return parts

    def _media(self, url: str) -> Json:
        inline = common.parse_data_url(url)
        if inline is not None:
            return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
        if url.startswith(("https://", "http://")):
            file_data: Json = {"fileUri": url}
            mime, _ = mimetypes.guess_type(urlsplit(url).path)
            if mime:
                file_data["mimeType"] = mime
            return {"fileData": file_data}
        raise InvalidRequest("an image or file must be a data URL or an http(s) URL", param="messages")

    def _model_parts(self, message: Json, call_names: dict[str, str], needs_signature: bool) -> list[Json]:
        parts: list[Json] = []
        content = message.get("content")
        if isinstance(content, list):
            text = "".join(common.as_str(p.get("text") or p.get("refusal")) for p in content if isinstance(p, dict))
        else:
            text = common.content_text(content)
        if text:
            parts.append({"text": text})
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise InvalidRequest("tool_calls must be a list", param="messages")
        for position, call in enumerate(calls or []):
            call = common.as_dict(call)
            name = common.as_str(common.as_dict(call.get("function")).get("name"))
            if not name:
                raise InvalidRequest("a tool call needs a function name", param="messages")
            if isinstance(call.get("id"), str):
                call_names[call["id"]] = name
            part: Json = {"functionCall": {"name": name, "args": common.tool_arguments(call)}}
            signature = common.as_dict(common.as_dict(call.get("extra_content")).get("google")).get("thought_signature")
            if isinstance(signature, str) and signature:
                part["thoughtSignature"] = signature
            elif position == 0 and needs_signature:
                part["thoughtSignature"] = SKIP_SIGNATURE
            parts.append(part)
        return parts

    def _function_response(self, message: Json, call_names: dict[str, str]) -> Json:
        call_id = common.as_str(message.get("tool_call_id"))
        name = call_names.get(call_id) or common.as_str(message.get("name"))
        if not name:
            raise InvalidRequest(
                "a tool result must answer a tool call made earlier in the conversation", param="messages"
            )
        text = common.content_text(message.get("content"))
        response: Json
        try:
            parsed = orjson.loads(text) if text[:1] == "{" else None
        except orjson.JSONDecodeError:
            parsed = None
        response = parsed if isinstance(parsed, dict) else {"output": text}
        return {"functionResponse": {"name": name, "response": response}}

    def _generation_config(self, request: Json) -> Json:
        config: Json = {}
        for source, name in (
            ("temperature", "temperature"),
            ("top_p", "topP"),
            ("seed", "seed"),
            ("presence_penalty", "presencePenalty"),
            ("frequency_penalty", "frequencyPenalty"),
        ):
            if request.get(source) is not None:
                config[name] = request[source]
        max_tokens = common.max_output_tokens(request)
        if max_tokens is not None:
            config["maxOutputTokens"] = max_tokens
        stops = common.stop_sequences(request.get("stop"))
        if stops:
            config["stopSequences"] = stops
        n = request.get("n")
        if n is not None and n != 1:
            config["candidateCount"] = n
        response_format = common.as_dict(request.get("response_format"))
        format_type = response_format.get("type")
        if format_type == "json_object":
            config["responseMimeType"] = "application/json"
        elif format_type == "json_schema":
            schema = common.as_dict(response_format.get("json_schema")).get("schema")
            if not isinstance(schema, dict):
                raise InvalidRequest("response_format.json_schema.schema must be an object", param="response_format")
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = schema
        elif format_type not in (None, "text"):
            raise InvalidRequest(f"unsupported response_format type {format_type!r}", param="response_format")
        return config

    def _tools(self, request: Json, body: Json) -> None:
        functions = common.function_tools(request)
        if not functions:
            return
        declarations = []
        for function in functions:
            declaration: Json = {"name": function["name"]}
            if isinstance(function.get("description"), str):
                declaration["description"] = function["description"]
            if function.get("parameters"):
                declaration["parametersJsonSchema"] = function["parameters"]
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
        choice = request.get("tool_choice")
        calling: Json
        if choice is None or choice == "auto":
            return
        if choice == "required":
            calling = {"mode": "ANY"}
        elif choice == "none":
            calling = {"mode": "NONE"}
        elif isinstance(choice, dict) and isinstance(common.as_dict(choice.get("function")).get("name"), str):
            calling = {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
        else:
            raise InvalidRequest("tool_choice must be auto, none, required or a function", param="tool_choice")
        body["toolConfig"] = {"functionCallingConfig": calling}

    # -- answers ---------------------------------------------------------------------------------

    def chat_response(self, target: ModelTarget, body: bytes) -> Json:
        payload = common.loads_object(body, "generateContent")
        if "error" in payload:
            raise error_from_object(payload["error"], status=200)
        answer = _Answer(payload)
        choices = []
        for position, candidate in enumerate(answer.candidates):
            index = candidate.get("index")
            index = index if isinstance(index, int) and not isinstance(index, bool) else position
            parts = _Answer.parts(candidate)
            calls = [
                _Answer.tool_call(part, ordinal, index)
                for ordinal, part in enumerate(p for p in parts if "functionCall" in p)
            ]
            text = _Answer.text(parts)
            message: Json = {"role": "assistant", "content": text if text or not calls else None}
            if calls:
                message["tool_calls"] = calls
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": finish_reason(candidate.get("finishReason"), bool(calls)),
                    "logprobs": None,
                }
            )
        if not choices:
            feedback = common.as_dict(payload.get("promptFeedback"))
            if not feedback.get("blockReason"):
                raise ProviderError("server", "generateContent: the provider sent no candidates", status=200)
            empty = {"role": "assistant", "content": ""}
            choices.append({"index": 0, "message": empty, "finish_reason": "content_filter", "logprobs": None})
        return common.completion(
            common.as_str(payload.get("responseId")) or "gemini-portico",
            common.as_str(payload.get("modelVersion")) or target.upstream_model,
            common.now(),
            choices,
            usage_from_gemini(payload.get("usageMetadata")),
        )

    def stream_decoder(self, target: ModelTarget) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(target)

    # -- embeddings ------------------------------------------------------------------------------

    def embeddings_request(self, target: ModelTarget, key: ProviderKey, request: Json) -> UpstreamRequest:
        model = "models/" + target.upstream_model.removeprefix("models/")
        dimensions = request.get("dimensions")
        requests = []
        for text in common.embedding_inputs(request):
            item: Json = {"model": model, "content": {"parts": [{"text": text}]}}
            if isinstance(dimensions, int) and not isinstance(dimensions, bool):
                item["outputDimensionality"] = dimensions
            requests.append(item)
        return UpstreamRequest(
            b"POST", self._url(target, "batchEmbedContents"), self._headers(key), common.dumps({"requests": requests})
        )

    def embeddings_response(self, target: ModelTarget, body: bytes) -> Json:
        """Floats always (Gemini has no base64 form; the OpenAI inbound format converts when
        the client asked for base64). Gemini reports no token
        count for embeddings, so ``usage`` is absent and the gateway estimates it."""
        payload = common.loads_object(body, "batchEmbedContents")
        if "error" in payload:
            raise error_from_object(payload["error"], status=200)
        embeddings = payload.get("embeddings")
        if not isinstance(embeddings, list):
            raise ProviderError("server", "batchEmbedContents: the provider sent no embeddings", status=200)
        vectors = [common.as_dict(e).get("values") for e in embeddings]
        if any(not isinstance(v, list) for v in vectors):
            raise ProviderError("server", "batchEmbedContents: an embedding has no values", status=200)
        usage = usage_from_gemini(payload.get("usageMetadata")) if "usageMetadata" in payload else None
        return common.embeddings_answer(target.upstream_model, vectors, usage)

    # -- errors ----------------------------------------------------------------------------------

    def error(self, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> ProviderError:
        error, message = common.error_message(body)
        kind = _refine(common.kind_for_status(status), error, message)
        retry_after = common.parse_retry_after(headers)
        if retry_after is None and status == 429:
            retry_after = _retry_delay(error)
        return ProviderError(kind, message or f"the provider answered {status}", status=status, retry_after=retry_after)


class GeminiStreamDecoder:
    """``data: {GenerateContentResponse}`` per event, no end marker of its own: the stream is
    finished when a candidate carried a ``finishReason`` (and the body then ended). Each
    chunk's text parts become content deltas, function calls arrive whole and become one
    tool-call delta each (id, name and all arguments at once)."""

    def __init__(self, target: ModelTarget) -> None:
        self.target = target
        self._parser = SSEParser()
        self._usage: Usage | None = None
        self._id = "gemini-portico"
        self._model = target.upstream_model
        self._created = common.now()
        self._started: set[int] = set()  # candidates whose role delta went out
        self._calls: dict[int, int] = {}  # candidate → tool calls so far
        self._finished = False

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def feed(self, data: bytes) -> list[Json]:
        try:
            events = self._parser.feed(data)
        except SSEError as error:
            raise ProviderError("server", str(error)) from None
        out: list[Json] = []
        for event in events:
            out.extend(self._event(event.data))
        return out

    def close(self) -> list[Json]:
        out: list[Json] = []
        for event in self._parser.close():
            out.extend(self._event(event.data))
        if not self._finished:
            raise ProviderError("server", "the provider's stream ended before a finishReason")
        return out

    def _event(self, data: str) -> list[Json]:
        payload = common.loads_object(data, "stream event")
        if "error" in payload:
            raise error_from_object(payload["error"])
        if payload.get("usageMetadata") is not None:
            self._usage = usage_from_gemini(payload["usageMetadata"])  # cumulative: the last one wins
        self._id = common.as_str(payload.get("responseId")) or self._id
        self._model = common.as_str(payload.get("modelVersion")) or self._model
        answer = _Answer(payload)
        out: list[Json] = []
        if not answer.candidates and common.as_dict(payload.get("promptFeedback")).get("blockReason"):
            self._finished = True
            return [
                common.chunk(
                    self._id, self._model, self._created, {"role": "assistant", "content": ""}, "content_filter"
                )
            ]
        for position, candidate in enumerate(answer.candidates):
            index = candidate.get("index")
            index = index if isinstance(index, int) and not isinstance(index, bool) else position
            delta: Json = {}
            if index not in self._started:
                self._started.add(index)
                delta["role"] = "assistant"
            parts = _Answer.parts(candidate)
            text = _Answer.text(parts)
            if text or "role" in delta:
                delta["content"] = text
            calls = []
            for part in parts:
                if "functionCall" in part:
                    ordinal = self._calls.get(index, 0)
                    self._calls[index] = ordinal + 1
                    calls.append({"index": ordinal, **_Answer.tool_call(part, ordinal, index)})
            if calls:
                delta["tool_calls"] = calls
            reason = candidate.get("finishReason")
            if delta:
                out.append(common.chunk(self._id, self._model, self._created, delta, None, index))
            if reason:
                self._finished = True
                final = finish_reason(reason, self._calls.get(index, 0) > 0)
                out.append(common.chunk(self._id, self._model, self._created, {}, final, index))
        return out
