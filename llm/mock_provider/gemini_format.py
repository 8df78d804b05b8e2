"""The Gemini API wire format (``v1beta/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse``, ``:batchEmbedContents``, ``:embedContent``).

Requests: ``contents`` of role user|model with ``parts``, ``systemInstruction``,
``generationConfig`` (``maxOutputTokens``, ``stopSequences``, ``responseMimeType``,
``responseSchema``...), ``tools[].functionDeclarations``, ``toolConfig``; field names in
lowerCamelCase or snake_case (proto JSON accepts both); an unknown field is refused
("Invalid JSON payload received. Unknown name ...").

Answers: ``candidates[].content.parts`` (``text`` or ``functionCall``), ``finishReason``
STOP | MAX_TOKENS (a function call finishes with STOP), ``usageMetadata``
(``promptTokenCount`` including ``cachedContentTokenCount``, ``candidatesTokenCount``,
``totalTokenCount``). A stream is SSE ``data:`` events separated by CRLF CRLF, each a whole
GenerateContentResponse; there is no end marker: the last event carries
``finishReason`` and the full usage. Embeddings carry no usage (the Gemini API reports
none).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from llm.mock_provider.answers import (
    CACHE_MIN_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    Answer,
    Prompt,
    count_tokens,
    embedding,
)
from llm.mock_provider.checks import is_int, is_number, type_name

Json = dict[str, Any]

REQUEST_FIELDS = frozenset(
    {
        "contents",
        "tools",
        "toolConfig",
        "safetySettings",
        "systemInstruction",
        "generationConfig",
        "cachedContent",
        "model",
    }
)
GENERATION_FIELDS = frozenset(
    {
        "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
        "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
        "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
        "thinkingConfig", "mediaResolution", "imageConfig",
    }
)  # fmt: skip
CONTENT_FIELDS = frozenset({"role", "parts"})
PART_FIELDS = frozenset(
    {
        "text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
        "codeExecutionResult", "thought", "thoughtSignature", "videoMetadata", "partMetadata",
    }
)  # fmt: skip
PART_DATA = PART_FIELDS - {"thought", "thoughtSignature", "videoMetadata", "partMetadata"}
TOOL_FIELDS = frozenset(
    {
        "functionDeclarations",
        "googleSearch",
        "googleSearchRetrieval",
        "codeExecution",
        "urlContext",
        "fileSearch",
        "googleMaps",
        "computerUse",
    }
)
DECLARATION_FIELDS = frozenset(
    {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema", "behavior"}
)
MODES = ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED")
MIME_TYPES = ("text/plain", "application/json", "text/x.enum")
FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")
PROTO = "type.googleapis.com/google.ai.generativelanguage.v1beta"
FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool": "STOP"}
EMBED_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def normalized(value: Any) -> Any:
    """The request with every field name in lowerCamelCase (schemas and args left as sent)."""
    if isinstance(value, dict):
        out: Json = {}
        for name, sub in value.items():
            key = camel(name)
            keep = key in (
                "responseSchema",
                "responseJsonSchema",
                "parameters",
                "parametersJsonSchema",
                "args",
                "response",
            )
            out[key] = sub if keep else normalized(sub)
        return out
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


# -- conformance ------------------------------------------------------------------------------


def _unknown(name: str, at: str | None = None) -> str:
    where = f" at '{at}'" if at else ""
    return f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.'


def check_generate(raw: Json) -> list[str]:
    body = normalized(raw)
    problems = [_unknown(name) for name in raw if camel(name) not in REQUEST_FIELDS]
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        problems.append("* GenerateContentRequest.contents: contents is not specified")
    else:
        for index, content in enumerate(contents):
            problems += _check_content(content, f"contents[{index}]")
    system = body.get("systemInstruction")
    if system is not None:
        problems += _check_content(system, "system_instruction", system=True)
    config = body.get("generationConfig")
    if config is not None:
        problems += _check_generation_config(config)
    problems += _check_tools(body)
    return problems


def _check_content(content: Any, where: str, *, system: bool = False) -> list[str]:
    if not isinstance(content, dict):
        return [f"Invalid value at '{where}' ({PROTO}.Content), {type_name(content)}"]
    problems = [_unknown(snake(name), where) for name in content if name not in CONTENT_FIELDS]
    role = content.get("role")
    if not system and role not in (None, "", "user", "model"):
        problems.append("Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        problems.append(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
        return problems
    for index, part in enumerate(parts):
        here = f"{where}.parts[{index}]"
        if not isinstance(part, dict):
            problems.append(f"Invalid value at '{here}' ({PROTO}.Part), {type_name(part)}")
            continue
        problems += [_unknown(snake(name), here) for name in part if name not in PART_FIELDS]
        data = [name for name in part if name in PART_DATA]
        if len(data) != 1:
            problems.append(
                f"* GenerateContentRequest.{here}.data: required oneof field 'data' must have one initialized field"
            )
        elif "text" in part and not isinstance(part["text"], str):
            problems.append(f"Invalid value at '{here}.text' (TYPE_STRING), {orjson.dumps(part['text']).decode()}")
        elif "functionCall" in part and not (
            isinstance(part["functionCall"], dict) and isinstance(part["functionCall"].get("name"), str)
        ):
            problems.append(f"* GenerateContentRequest.{here}.function_call.name: Name is required.")
        elif "functionResponse" in part and not (
            isinstance(part["functionResponse"], dict)
            and isinstance(part["functionResponse"].get("name"), str)
            and isinstance(part["functionResponse"].get("response"), dict)
        ):
            problems.append(
                f"* GenerateContentRequest.{here}.function_response: name and a response object are required."
            )
    return problems


def _check_generation_config(config: Any) -> list[str]:
    if not isinstance(config, dict):
        return [f"Invalid value at 'generation_config' ({PROTO}.GenerationConfig)"]
    problems = [_unknown(snake(name), "generation_config") for name in config if name not in GENERATION_FIELDS]
    limit = config.get("maxOutputTokens")
    if limit is not None and (not is_int(limit) or limit < 1):
        problems.append(
            f"Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), {orjson.dumps(limit).decode()}"
        )
    for name, high in (("temperature", 2.0), ("topP", 1.0)):
        value = config.get(name)
        if value is not None and (not is_number(value) or not 0 <= value <= high):
            problems.append(f"* GenerateContentRequest.generation_config.{snake(name)}: must be in [0, {high:g}]")
    stops = config.get("stopSequences")
    if stops is not None and not (
        isinstance(stops, list) and len(stops) <= 5 and all(isinstance(s, str) for s in stops)
    ):
        problems.append("* GenerateContentRequest.generation_config.stop_sequences: at most 5 strings")
    mime = config.get("responseMimeType")
    if mime is not None and mime not in MIME_TYPES:
        problems.append(
            "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are "
            f"{', '.join(MIME_TYPES)}."
        )
    if (config.get("responseSchema") or config.get("responseJsonSchema")) and mime not in (
        "application/json",
        "text/x.enum",
    ):
        problems.append(
            "* GenerateContentRequest.generation_config.response_mime_type: must be application/json with a "
            "response schema."
        )
    return problems


def _check_tools(body: Json) -> list[str]:
    problems: list[str] = []
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return ["Invalid value at 'tools' (type.googleapis.com/google.ai.generativelanguage.v1beta.Tool)"]
        for index, tool in enumerate(tools):
            if not isinstance(tool, dict):
                problems.append(
                    f"Invalid value at 'tools[{index}]' (type.googleapis.com/google.ai.generativelanguage.v1beta.Tool)"
                )
                continue
            problems += [_unknown(snake(name), f"tools[{index}]") for name in tool if name not in TOOL_FIELDS]
            for number, declaration in enumerate(tool.get("functionDeclarations") or ()):
                here = f"tools[{index}].function_declarations[{number}]"
                if not isinstance(declaration, dict):
                    problems.append(f"Invalid value at '{here}'")
                    continue
                problems += [_unknown(snake(name), here) for name in declaration if name not in DECLARATION_FIELDS]
                if not isinstance(declaration.get("name"), str) or not FUNCTION_NAME.match(declaration["name"]):
                    problems.append(f"* GenerateContentRequest.{here}.name: Invalid function name.")
    config = body.get("toolConfig")
    if config is not None:
        calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
        if not isinstance(calling, dict):
            problems.append(
                "Invalid value at 'tool_config' (type.googleapis.com/google.ai.generativelanguage.v1beta.ToolConfig)"
            )
        elif calling.get("mode") is not None and calling["mode"] not in MODES:
            problems.append(
                "Invalid value at 'tool_config.function_calling_config.mode' "
                f"({PROTO}.FunctionCallingConfig.Mode), {orjson.dumps(calling['mode']).decode()}"
            )
    return problems


def check_embed(raw: Json, model: str, batch: bool) -> list[str]:
    body = normalized(raw)
    if batch:
        problems = [_unknown(name) for name in raw if camel(name) != "requests"]
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return [*problems, "* BatchEmbedContentsRequest.requests: requests is not specified"]
        for index, request in enumerate(requests):
            if not isinstance(request, dict):
                problems.append(f"Invalid value at 'requests[{index}]'")
                continue
            problems += _check_embed_request(request, f"requests[{index}]", model, model_required=True)
        return problems
    return _check_embed_request(body, "", model, model_required=False)


def _check_embed_request(request: Json, where: str, model: str, *, model_required: bool) -> list[str]:
    problems = [_unknown(snake(name), where or None) for name in request if name not in EMBED_FIELDS]
    named = request.get("model")
    if named is None and model_required:
        problems.append(f"* BatchEmbedContentsRequest.{where}.model: model is required")
    elif named is not None and named != f"models/{model}":
        problems.append(
            f"* BatchEmbedContentsRequest.{where}.model: model `{named}` does not match the model in the URL "
            f"`models/{model}`"
        )
    problems += _check_content(request.get("content"), f"{where}.content" if where else "content", system=True)
    return problems


# -- what was asked ---------------------------------------------------------------------------


def _part_text(part: Any) -> str:
    if not isinstance(part, dict):
        return ""
    if isinstance(part.get("text"), str):
        return str(part["text"])
    if isinstance(part.get("functionCall"), dict):
        call = part["functionCall"]
        return f"{call.get('name', '')} {orjson.dumps(call.get('args', {})).decode()}"
    if isinstance(part.get("functionResponse"), dict):
        return orjson.dumps(part["functionResponse"].get("response", {})).decode()
    return ""


def _content_text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    return " ".join(_part_text(part) for part in parts or ())


def prompt(raw: Json) -> Prompt:
    body = normalized(raw)
    contents = [c for c in body.get("contents") or () if isinstance(c, dict)]
    system = body.get("systemInstruction")
    system_tokens = count_tokens(_content_text(system)) if system is not None else 0
    total = system_tokens + sum(MESSAGE_OVERHEAD_TOKENS + count_tokens(_content_text(c)) for c in contents)
    asked = Prompt(prompt_tokens=total, cached_tokens=system_tokens if system_tokens >= CACHE_MIN_TOKENS else 0)
    if contents and contents[-1].get("role") in (None, "", "user"):
        parts = [p for p in contents[-1].get("parts") or () if isinstance(p, dict)]
        responses = [p for p in parts if "functionResponse" in p]
        if responses:
            asked.tool_result = _part_text(responses[-1])
        else:
            asked.last_user = " ".join(_part_text(p) for p in parts)
    for tool in body.get("tools") or ():
        for declaration in (tool.get("functionDeclarations") if isinstance(tool, dict) else None) or ():
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                schema = declaration.get("parameters") or declaration.get("parametersJsonSchema")
                asked.tools.append((declaration["name"], schema if isinstance(schema, dict) else {}))
    config = body.get("toolConfig")
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    if isinstance(calling, dict):
        mode = calling.get("mode")
        allowed = calling.get("allowedFunctionNames")
        if mode == "NONE":
            asked.tool_choice = "none"
        elif mode == "ANY":
            asked.tool_choice = str(allowed[0]) if isinstance(allowed, list) and allowed else "any"
    generation = body.get("generationConfig")
    if isinstance(generation, dict):
        if generation.get("responseMimeType") == "application/json":
            asked.json_mode = True
            schema = generation.get("responseSchema") or generation.get("responseJsonSchema")
            asked.json_schema = schema if isinstance(schema, dict) else None
        limit = generation.get("maxOutputTokens")
        asked.max_tokens = limit if is_int(limit) else None
        asked.stop = [s for s in generation.get("stopSequences") or () if isinstance(s, str)]
    return asked


# -- answers ----------------------------------------------------------------------------------


def _usage(answer: Answer) -> Json:
    usage: Json = {
        "promptTokenCount": answer.prompt_tokens,
        "candidatesTokenCount": answer.completion_tokens,
        "totalTokenCount": answer.prompt_tokens + answer.completion_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": answer.prompt_tokens}],
    }
    if answer.cached_tokens:
        usage["cachedContentTokenCount"] = answer.cached_tokens
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": answer.cached_tokens}]
    return usage


def _response(model: str, seq: int, parts: list[Json], finish: str | None, usage: Json | None) -> Json:
    candidate: Json = {"content": {"parts": parts, "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    response: Json = {"candidates": [candidate]}
    if usage is not None:
        response["usageMetadata"] = usage
    response["modelVersion"] = model
    response["responseId"] = f"mock{seq:016d}"
    return response


def _parts(answer: Answer) -> list[Json]:
    if answer.tool_name is not None:
        return [{"functionCall": {"name": answer.tool_name, "args": answer.tool_arguments}}]
    return [{"text": answer.text}]


def render_generate(model: str, seq: int, answer: Answer, *, usage: bool) -> bytes:
    return orjson.dumps(_response(model, seq, _parts(answer), FINISH[answer.finish], _usage(answer) if usage else None))


def _event(response: Json) -> bytes:
    return b"data: " + orjson.dumps(response) + b"\r\n\r\n"


def stream_events(model: str, seq: int, answer: Answer, *, usage: bool) -> list[bytes]:
    running = {"promptTokenCount": answer.prompt_tokens, "totalTokenCount": answer.prompt_tokens} if usage else None
    final_usage = _usage(answer) if usage else None
    finish = FINISH[answer.finish]
    if answer.tool_name is not None:
        return [_event(_response(model, seq, _parts(answer), finish, final_usage))]
    pieces = answer.pieces or [""]
    events = [_event(_response(model, seq, [{"text": piece}], None, running)) for piece in pieces[:-1]]
    events.append(_event(_response(model, seq, [{"text": pieces[-1]}], finish, final_usage)))
    return events


def broken_event() -> bytes:
    return b'data: {"candidates": [{"content": {"parts": [{"text": \r\n\r\n'


def embed_texts(raw: Json, batch: bool) -> list[tuple[str, int | None]]:
    body = normalized(raw)
    requests = body.get("requests") if batch else [body]
    out: list[tuple[str, int | None]] = []
    for request in requests or ():
        if isinstance(request, dict):
            size = request.get("outputDimensionality")
            out.append((_content_text(request.get("content")), size if is_int(size) else None))
    return out


def render_embeddings(model: str, raw: Json, batch: bool) -> bytes:
    vectors = [{"values": embedding(model, text, size or 8)} for text, size in embed_texts(raw, batch)]
    if batch:
        return orjson.dumps({"embeddings": vectors})
    return orjson.dumps({"embedding": vectors[0] if vectors else {"values": []}})
