"""The OpenAI Chat Completions and Embeddings wire format, and its three relatives:
Azure OpenAI (same bodies, ``prompt_filter_results`` / ``content_filter_results``, a first
stream event with no choices), Mistral (a stricter schema that refuses unknown fields
with 422, usage always in the last stream chunk, tool calls sent whole) and
OpenAI-compatible servers such as vLLM (lenient about unknown fields, no usage details).
"""

from __future__ import annotations

import base64
import struct
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
from llm.mock_provider.checks import is_int, number_problem, type_name

Json = dict[str, Any]

OPENAI_CHAT_FIELDS = frozenset(
    {
        "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls", "prediction",
        "presence_penalty", "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format",
        "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
        "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
    }
)  # fmt: skip
AZURE_CHAT_FIELDS = OPENAI_CHAT_FIELDS | {"data_sources", "user_security_context"}
MISTRAL_CHAT_FIELDS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
        "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n", "prediction",
        "parallel_tool_calls", "prompt_mode", "safe_prompt",
    }
)  # fmt: skip
OPENAI_MESSAGE_FIELDS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "function_call", "refusal", "audio"},
    "tool": {"role", "content", "tool_call_id"},
    "function": {"role", "content", "name"},
}
MISTRAL_MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "prefix"},
    "tool": {"role", "content", "tool_call_id", "name"},
}
OPENAI_PART_TYPES = {
    "system": {"text"},
    "developer": {"text"},
    "user": {"text", "image_url", "input_audio", "file"},
    "assistant": {"text", "refusal"},
    "tool": {"text"},
    "function": {"text"},
}
MISTRAL_PART_TYPES = {"text", "image_url", "document_url", "reference", "file", "thinking", "input_audio"}
EMBEDDING_FIELDS = {
    "openai": {"model", "input", "encoding_format", "dimensions", "user"},
    "azure-openai": {"model", "input", "encoding_format", "dimensions", "user", "input_type"},
    "mistral": {"model", "input", "output_dimension", "output_dtype", "encoding_format", "metadata"},
}
FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool": "tool_calls"}
FILTER_RESULTS = {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")}


# -- conformance ------------------------------------------------------------------------------


def check_chat(kind: str, body: Json) -> list[str]:
    """What in this body the provider would refuse, in its own words (first = the answer)."""
    problems: list[str] = []
    mistral = kind == "mistral"
    allowed = {"openai": OPENAI_CHAT_FIELDS, "azure-openai": AZURE_CHAT_FIELDS, "mistral": MISTRAL_CHAT_FIELDS}.get(
        kind
    )
    if allowed is not None:
        for name in body:
            if name not in allowed:
                problems.append(
                    f"body.{name}: Extra inputs are not permitted"
                    if mistral
                    else f"Unrecognized request argument supplied: {name}"
                )
    model = body.get("model")
    if (kind != "azure-openai" or model is not None) and (not isinstance(model, str) or not model):
        problems.append("you must provide a model parameter" if model is None else "Invalid type for 'model'.")
    problems += _check_messages(kind, body.get("messages"))
    for name in ("max_tokens", "max_completion_tokens"):
        if body.get(name) is not None and (problem := number_problem(name, body[name], 1, None, integer=True)):
            problems.append(problem)
    if body.get("temperature") is not None and (
        problem := number_problem("temperature", body["temperature"], 0, 1.5 if mistral else 2)
    ):
        problems.append(problem)
    if body.get("top_p") is not None and (problem := number_problem("top_p", body["top_p"], 0, 1)):
        problems.append(problem)
    if body.get("n") is not None and (problem := number_problem("n", body["n"], 1, 128, integer=True)):
        problems.append(problem)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        problems.append(f"Invalid type for 'stream': expected a boolean, but got {type_name(stream)} instead.")
    options = body.get("stream_options")
    if options is not None:
        if stream is not True:
            problems.append("The 'stream_options' parameter is only allowed when 'stream' is enabled.")
        elif not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
            problems.append("Invalid 'stream_options': expected an object with a boolean 'include_usage'.")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))
    ):
        problems.append("Invalid 'stop': expected a string or an array of up to 4 strings.")
    problems += _check_tools(kind, body)
    problems += _check_response_format(body)
    return problems


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _check_messages(kind: str, messages: Any) -> list[str]:
    if not isinstance(messages, list):
        return ["Missing required parameter: 'messages'." if messages is None else "Invalid type for 'messages'."]
    if not messages:
        return ["Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array."]
    problems: list[str] = []
    mistral = kind == "mistral"
    fields = MISTRAL_MESSAGE_FIELDS if mistral else OPENAI_MESSAGE_FIELDS
    strict = kind != "openai-compatible"
    open_ids: list[str] = []  # tool calls of the last assistant message still without a tool message
    answered: set[str] = set()
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            problems.append(f"Invalid type for '{where}': expected an object, but got {type_name(message)} instead.")
            continue
        role = message.get("role")
        if role not in fields:
            problems.append(
                f"Invalid value: '{role}'. Supported values are: {', '.join(repr(r) for r in fields)}. ({where}.role)"
            )
            continue
        if strict:
            for name in message:
                if name not in fields[role]:
                    problems.append(
                        f"body.messages.{index}.{role}.{name}: Extra inputs are not permitted"
                        if mistral
                        else f"Additional properties are not allowed ('{name}' was unexpected) - 'messages.{index}'"
                    )
        content = message.get("content")
        if role == "tool":
            tool_call_id = message.get("tool_call_id")
            if not isinstance(tool_call_id, str):
                problems.append(f"Missing required parameter: '{where}.tool_call_id'.")
            elif tool_call_id not in open_ids and tool_call_id not in answered:
                problems.append(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                    "'tool_calls'."
                )
            else:
                answered.add(tool_call_id)
                if tool_call_id in open_ids:
                    open_ids.remove(tool_call_id)
        elif open_ids:
            problems.append(_unanswered(open_ids))
            open_ids = []
        if role == "assistant":
            answered = set()
            tool_calls = message.get("tool_calls")
            if tool_calls is not None:
                calls, call_problems = _check_tool_calls(where, tool_calls)
                problems += call_problems
                open_ids = calls
            if content is None and not tool_calls and message.get("function_call") is None:
                problems.append(f"Invalid value for '{where}.content': expected a string or an array, got null.")
        if content is None and role != "assistant":
            problems.append(f"Missing required parameter: '{where}.content'.")
        elif content is not None and not isinstance(content, str):
            if not isinstance(content, list):
                problems.append(f"Invalid type for '{where}.content': expected one of a string or array of objects.")
            else:
                allowed_parts = MISTRAL_PART_TYPES if mistral else OPENAI_PART_TYPES[role]
                for part_index, part in enumerate(content):
                    part_type = part.get("type") if isinstance(part, dict) else None
                    if part_type not in allowed_parts:
                        problems.append(f"Invalid value: '{part_type}'. ({where}.content[{part_index}].type)")
                    elif part_type == "text" and not isinstance(part.get("text"), str):
                        problems.append(f"Missing required parameter: '{where}.content[{part_index}].text'.")
    if open_ids:
        problems.append(_unanswered(open_ids))
    return problems


def _unanswered(ids: list[str]) -> str:
    return (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(ids)}"
    )


def _check_tool_calls(where: str, tool_calls: Any) -> tuple[list[str], list[str]]:
    if not isinstance(tool_calls, list):
        return [], [f"Invalid type for '{where}.tool_calls': expected an array."]
    ids: list[str] = []
    problems: list[str] = []
    for index, call in enumerate(tool_calls):
        here = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            problems.append(f"Missing required parameter: '{here}.id'.")
            continue
        if call.get("type", "function") != "function":
            problems.append(f"Invalid value: '{call.get('type')}'. Supported values are: 'function'. ({here}.type)")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            problems.append(f"Missing required parameter: '{here}.function.name'.")
        elif not isinstance(function.get("arguments"), str):
            problems.append(f"Invalid type for '{here}.function.arguments': expected a string (JSON text).")
        ids.append(call["id"])
    return ids, problems


def _check_tools(kind: str, body: Json) -> list[str]:
    problems: list[str] = []
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return ["Invalid type for 'tools': expected an array."]
        for index, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function":
                problems.append(f"Invalid value for 'tools[{index}].type': expected 'function'.")
            elif not isinstance(function, dict) or not isinstance(function.get("name"), str):
                problems.append(f"Missing required parameter: 'tools[{index}].function.name'.")
            elif function.get("parameters") is not None and not isinstance(function["parameters"], dict):
                problems.append(f"Invalid type for 'tools[{index}].function.parameters': expected an object.")
    choice = body.get("tool_choice")
    if choice is not None:
        modes = ("none", "auto", "required", "any") if kind == "mistral" else ("none", "auto", "required")
        if not tools and choice != "none":
            problems.append(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
            )
        elif isinstance(choice, str):
            if choice not in modes:
                problems.append(f"Invalid value: '{choice}'. Supported values are: {', '.join(modes)}. (tool_choice)")
        elif not (
            isinstance(choice, dict)
            and choice.get("type") == "function"
            and isinstance(choice.get("function"), dict)
            and isinstance(choice["function"].get("name"), str)
        ):
            problems.append("Invalid 'tool_choice': expected a string or {'type': 'function', 'function': {'name'}}.")
    return problems


def _check_response_format(body: Json) -> list[str]:
    response_format = body.get("response_format")
    if response_format is None:
        return []
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        return [f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', and 'text'."]
    if kind == "json_schema":
        schema = response_format.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
            return ["Missing required parameter: 'response_format.json_schema.name'."]
        if schema.get("schema") is not None and not isinstance(schema["schema"], dict):
            return ["Invalid type for 'response_format.json_schema.schema': expected an object."]
    if kind == "json_object":
        messages = body.get("messages")
        if isinstance(messages, list) and not any(
            "json" in _text_of(m.get("content")).lower() for m in messages if isinstance(m, dict)
        ):
            return [
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."
            ]
    return []


def check_embeddings(kind: str, body: Json) -> list[str]:
    problems: list[str] = []
    allowed = EMBEDDING_FIELDS.get(kind)
    if allowed is not None:
        for name in body:
            if name not in allowed:
                problems.append(
                    f"body.{name}: Extra inputs are not permitted"
                    if kind == "mistral"
                    else f"Unrecognized request argument supplied: {name}"
                )
    if kind != "azure-openai" and not isinstance(body.get("model"), str):
        problems.append("you must provide a model parameter")
    texts = embedding_inputs(body.get("input"))
    if texts is None or not texts or any(text == "" for text in texts):
        problems.append(
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
        )
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        problems.append(f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'. (encoding_format)")
    if body.get("dimensions") is not None and (
        problem := number_problem("dimensions", body["dimensions"], 1, 4096, integer=True)
    ):
        problems.append(problem)
    return problems


def embedding_inputs(value: Any) -> list[str] | None:
    """The texts to embed: a string, strings, token ids, or lists of token ids."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(is_int(v) for v in value):
            return [" ".join(map(str, value))]
        if all(isinstance(v, list) and v and all(is_int(t) for t in v) for v in value):
            return [" ".join(map(str, v)) for v in value]
    return None


# -- what was asked ---------------------------------------------------------------------------


def prompt(body: Json) -> Prompt:
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    total = cached = 0
    for message in messages:
        tokens = MESSAGE_OVERHEAD_TOKENS + count_tokens(_text_of(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {} if isinstance(call, dict) else {}
            tokens += count_tokens(str(function.get("name", ""))) + count_tokens(str(function.get("arguments", "")))
        total += tokens
        if message.get("role") in ("system", "developer"):
            cached += tokens
    asked = Prompt(prompt_tokens=total, cached_tokens=cached if cached >= CACHE_MIN_TOKENS else 0)
    if messages:
        last = messages[-1]
        if last.get("role") == "user":
            asked.last_user = _text_of(last.get("content"))
        elif last.get("role") in ("tool", "function"):
            asked.tool_result = _text_of(last.get("content"))
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            parameters = function.get("parameters")
            asked.tools.append((function["name"], parameters if isinstance(parameters, dict) else {}))
    choice = body.get("tool_choice")
    if choice in ("none", "required", "any"):
        asked.tool_choice = "none" if choice == "none" else "any"
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        asked.tool_choice = str(choice["function"].get("name"))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        asked.json_mode = True
        schema = response_format.get("json_schema")
        if isinstance(schema, dict) and isinstance(schema.get("schema"), dict):
            asked.json_schema = schema["schema"]
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    asked.max_tokens = limit if is_int(limit) else None
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    asked.stop = [s for s in stops if isinstance(s, str)]
    return asked


# -- answers ----------------------------------------------------------------------------------


def _usage(kind: str, answer: Answer) -> Json:
    usage: Json = {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }
    if kind in ("openai", "azure-openai"):
        usage["prompt_tokens_details"] = {"cached_tokens": answer.cached_tokens, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    elif kind == "openai-compatible":
        usage["prompt_tokens_details"] = None  # vLLM reports none unless asked to
    return usage


def _ids(kind: str, seq: int) -> tuple[str, str]:
    """(completion id, tool call id) in the provider's style."""
    if kind == "mistral":
        return f"{seq:032x}", f"mock{seq % 100000:05d}"[-9:]
    return f"chatcmpl-mock{seq:016d}", f"call_mock{seq:016d}"


def _tool_call(answer: Answer, call_id: str) -> Json:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": answer.tool_name, "arguments": answer.tool_arguments_text},
    }


def render_chat(kind: str, model: str, seq: int, created: int, answer: Answer, *, usage: bool) -> bytes:
    completion_id, call_id = _ids(kind, seq)
    message: Json = {"role": "assistant", "content": answer.text or None}
    if kind in ("openai", "azure-openai"):
        message["refusal"] = None
        message["annotations"] = []
    if answer.tool_name is not None:
        message["tool_calls"] = [_tool_call(answer, call_id)]
    elif kind == "mistral":
        message["tool_calls"] = None
    choice: Json = {"index": 0, "message": message, "finish_reason": FINISH[answer.finish]}
    if kind != "mistral":
        choice["logprobs"] = None
    if kind == "azure-openai":
        choice["content_filter_results"] = FILTER_RESULTS
    completion: Json = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
    }
    if usage:
        completion["usage"] = _usage(kind, answer)
    if kind in ("openai", "azure-openai"):
        completion["system_fingerprint"] = "fp_mock0001"
    if kind == "openai":
        completion["service_tier"] = "default"
    if kind == "azure-openai":
        completion["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": FILTER_RESULTS}]
    return orjson.dumps(completion)


def stream_events(
    kind: str, model: str, seq: int, created: int, answer: Answer, *, include_usage: bool, usage: bool
) -> list[bytes]:
    """The answer as ``data:`` events, ending with ``data: [DONE]``. Usage: OpenAI, Azure and
    compatible servers send a last chunk with empty choices when ``include_usage`` was asked;
    Mistral puts usage on its finishing chunk, always."""
    completion_id, call_id = _ids(kind, seq)
    mistral = kind == "mistral"
    head: Json = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    if kind == "openai":
        head["service_tier"] = "default"
    if kind in ("openai", "azure-openai"):
        head["system_fingerprint"] = "fp_mock0001"
    prefix = b"data: " + orjson.dumps(head)[:-1] + b',"choices":[{"index":0,"delta":'
    usage_null = b',"usage":null' if include_usage and not mistral else b""
    logprobs = b"" if mistral else b',"logprobs":null'
    middle = logprobs + b',"finish_reason":null}]' + usage_null + b"}\n\n"

    events: list[bytes] = []
    if kind == "azure-openai":
        filters = {"prompt_index": 0, "content_filter_results": FILTER_RESULTS}
        first = {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": [filters]}
        events.append(b"data: " + orjson.dumps(first) + b"\n\n")

    def delta(value: Json) -> bytes:
        return prefix + orjson.dumps(value) + middle

    finish = FINISH[answer.finish]
    if answer.tool_name is not None and mistral:
        call = {**_tool_call(answer, call_id), "index": 0}
        finishing: Json = {"role": "assistant", "content": "", "tool_calls": [call]}
    elif answer.tool_name is not None:
        events.append(
            delta(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": answer.tool_name, "arguments": ""},
                        }
                    ],
                    "refusal": None,
                }
            )
        )
        for piece in answer.argument_pieces():
            events.append(delta({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        finishing = {}
    else:
        events.append(
            delta(
                {"role": "assistant", "content": ""}
                if mistral
                else {"role": "assistant", "content": "", "refusal": None}
            )
        )
        for piece in answer.pieces:
            events.append(delta({"content": piece}))
        finishing = {"content": ""} if mistral else {}
    last: Json = {**head, "choices": [{"index": 0, "delta": finishing, "finish_reason": finish}]}
    if not mistral:
        last["choices"][0]["logprobs"] = None
        if include_usage:
            last["usage"] = None
    elif usage:
        last["usage"] = _usage(kind, answer)
    events.append(b"data: " + orjson.dumps(last) + b"\n\n")
    if include_usage and usage and not mistral:
        events.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": _usage(kind, answer)}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def broken_event() -> bytes:
    return b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": \n\n'


def render_embeddings(kind: str, model: str, body: Json, *, usage: bool) -> bytes:
    texts = embedding_inputs(body.get("input")) or []
    dimensions = body.get("dimensions", body.get("output_dimension"))
    size = dimensions if isinstance(dimensions, int) and not isinstance(dimensions, bool) else 8
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = embedding(model, text, size)
        value: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": value})
    answer: Json = {"object": "list", "data": data, "model": model}
    if kind == "mistral":
        answer["id"] = "embd-mock"
    if usage:
        tokens = sum(count_tokens(text) for text in texts)
        answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return orjson.dumps(answer)
