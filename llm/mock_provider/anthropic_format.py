"""The Anthropic Messages API wire format (``anthropic-version: 2023-06-01``).

Requests: ``model`` and ``max_tokens`` required, ``system`` top-level (never a message
role), messages of role user|assistant whose content is a string or typed blocks, every
``tool_use`` answered by a ``tool_result`` in the next user message, unknown fields
refused ("Extra inputs are not permitted"), temperature in 0..1. Consecutive messages of
one role are accepted: the API combines them into one turn.

Answers: a ``message`` with content blocks, ``stop_reason`` end_turn | max_tokens |
stop_sequence | tool_use, usage ``input_tokens`` (excluding cache reads),
``cache_creation_input_tokens``, ``cache_read_input_tokens``, ``output_tokens``. Streams:
message_start, content_block_start, ping, content_block_delta (text_delta /
input_json_delta)..., content_block_stop, message_delta (stop_reason, usage),
message_stop.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from llm.mock_provider.answers import MESSAGE_OVERHEAD_TOKENS, Answer, Prompt, count_tokens
from llm.mock_provider.checks import is_int, number_problem, type_name

Json = dict[str, Any]

# Dated API versions (2023-06-01 is the one documented for the Messages API; SDKs send
# newer dates). Anything not shaped like a date is refused, as the API refuses it.
VERSION = re.compile(r"^20\d\d-\d\d-\d\d$")
FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
        "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
        "context_management", "output_config",
    }
)  # fmt: skip
BLOCK_TYPES = {
    "user": {"text", "image", "document", "tool_result", "search_result"},
    "assistant": {"text", "tool_use", "thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result"},
}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence", "tool": "tool_use"}


# -- conformance ------------------------------------------------------------------------------


def check_headers(headers: dict[bytes, bytes]) -> list[str]:
    version = headers.get(b"anthropic-version")
    if version is None:
        return ["anthropic-version: header is required"]
    if not VERSION.match(version.decode("latin-1")):
        return [f"anthropic-version: invalid version {version.decode('latin-1')!r}"]
    return []


def check_messages_request(body: Json) -> list[str]:
    problems = [f"{name}: Extra inputs are not permitted" for name in body if name not in FIELDS]
    if not isinstance(body.get("model"), str) or not body["model"]:
        problems.append("model: Field required" if "model" not in body else "model: Input should be a valid string")
    if "max_tokens" not in body:
        problems.append("max_tokens: Field required")
    elif problem := number_problem("max_tokens", body["max_tokens"], 1, None, integer=True):
        problems.append(f"max_tokens: {problem}")
    if body.get("temperature") is not None and (problem := number_problem("temperature", body["temperature"], 0, 1)):
        problems.append(f"temperature: {problem}")
    if body.get("top_p") is not None and (problem := number_problem("top_p", body["top_p"], 0, 1)):
        problems.append(f"top_p: {problem}")
    if body.get("top_k") is not None and not is_int(body["top_k"]):
        problems.append("top_k: Input should be a valid integer")
    if "stream" in body and not isinstance(body["stream"], bool):
        problems.append("stream: Input should be a valid boolean")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        problems.append("stop_sequences: Input should be a valid list of strings")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
        problems.append("metadata: only user_id is allowed")
    problems += _check_output_config(body.get("output_config"))
    problems += _check_system(body.get("system"))
    problems += _check_messages(body.get("messages"))
    problems += _check_tools(body)
    return problems


def _check_output_config(config: Any) -> list[str]:
    """Structured outputs: ``output_config.format`` = ``{"type": "json_schema", "schema": {...}}``
    (and ``effort``), as documented."""
    if config is None:
        return []
    if not isinstance(config, dict):
        return ["output_config: Input should be a valid dictionary"]
    problems = [
        f"output_config.{name}: Extra inputs are not permitted" for name in config if name not in ("format", "effort")
    ]
    output_format = config.get("format")
    if output_format is None:
        return problems
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        return [*problems, "output_config.format.type: Input should be 'json_schema'"]
    if not isinstance(output_format.get("schema"), dict):
        problems.append("output_config.format.schema: Input should be a valid dictionary")
    problems += [
        f"output_config.format.{name}: Extra inputs are not permitted"
        for name in output_format
        if name not in ("type", "schema")
    ]
    return problems


def _check_system(system: Any) -> list[str]:
    if system is None or isinstance(system, str):
        return []
    if isinstance(system, list) and all(
        isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
        for block in system
    ):
        return []
    return ["system: Input should be a valid string or a list of text blocks"]


def _check_messages(messages: Any) -> list[str]:
    if not isinstance(messages, list):
        return ["messages: Field required" if messages is None else "messages: Input should be a valid list"]
    if not messages:
        return ["messages: at least one message is required"]
    problems: list[str] = []
    pending_tool_uses: list[str] = []  # tool_use ids of the previous assistant message
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            problems.append(f"{where}: Input should be a valid dictionary")
            continue
        role = message.get("role")
        if role == "system":
            problems.append(
                f'{where}.role: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                'not "system" as an input message role.'
            )
            continue
        if role not in ("user", "assistant"):
            problems.append(f"{where}.role: Input should be 'user' or 'assistant'")
            continue
        problems += [
            f"{where}.{name}: Extra inputs are not permitted" for name in message if name not in ("role", "content")
        ]
        content = message.get("content")
        blocks: list[Any]
        if isinstance(content, str):
            if not content and index != len(messages) - 1:
                problems.append(
                    f"{where}: all messages must have non-empty content except for the optional final assistant message"
                )
            blocks = []
        elif isinstance(content, list):
            blocks = content
            if not blocks and index != len(messages) - 1:
                problems.append(
                    f"{where}: all messages must have non-empty content except for the optional final assistant message"
                )
        else:
            problems.append(
                f"{where}.content: Input should be a valid string or list of content blocks"
                if content is not None
                else f"{where}.content: Field required"
            )
            blocks = []
        tool_uses: list[str] = []
        results: list[str] = []
        for block_index, block in enumerate(blocks):
            here = f"{where}.content.{block_index}"
            block_type = block.get("type") if isinstance(block, dict) else None
            if block_type not in BLOCK_TYPES[role]:
                problems.append(
                    f"{here}.type: Input tag '{block_type}' found using 'type' does not match any of the expected tags "
                    f"for a {role} message"
                )
                continue
            assert isinstance(block, dict)
            if block_type == "text" and not isinstance(block.get("text"), str):
                problems.append(f"{here}.text: Field required")
            elif block_type == "image" and not isinstance(block.get("source"), dict):
                problems.append(f"{here}.source: Field required")
            elif block_type == "tool_use":
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                    problems.append(f"{here}: tool_use blocks need an id and a name")
                elif not isinstance(block.get("input"), dict):
                    problems.append(f"{here}.input: Input should be a valid dictionary")
                else:
                    tool_uses.append(block["id"])
            elif block_type == "tool_result":
                tool_use_id = block.get("tool_use_id")
                if not isinstance(tool_use_id, str):
                    problems.append(f"{here}.tool_use_id: Field required")
                elif tool_use_id not in pending_tool_uses:
                    problems.append(
                        f"{here}: unexpected `tool_use_id` found in `tool_result` blocks: {tool_use_id}. Each "
                        "`tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )
                else:
                    results.append(tool_use_id)
                result_content = block.get("content")
                if result_content is not None and not isinstance(result_content, str | list):
                    problems.append(f"{here}.content: Input should be a valid string or list")
        missing = [tool_id for tool_id in pending_tool_uses if tool_id not in results]
        if missing:
            problems.append(
                f"{where}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in the "
                "next message."
            )
        pending_tool_uses = tool_uses
    return problems


def _check_tools(body: Json) -> list[str]:
    problems: list[str] = []
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            return ["tools: Input should be a valid list"]
        for index, tool in enumerate(tools):
            where = f"tools.{index}"
            if not isinstance(tool, dict):
                problems.append(f"{where}: Input should be a valid dictionary")
                continue
            if tool.get("type") not in (None, "custom"):
                continue  # a server tool (web_search_...): not checked here
            problems += [
                f"{where}.custom.{name}: Extra inputs are not permitted"
                for name in tool
                if name not in ("name", "description", "input_schema", "type", "cache_control")
            ]
            if not isinstance(tool.get("name"), str):
                problems.append(f"{where}.custom.name: Field required")
            else:
                names.append(tool["name"])
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                problems.append(f"{where}.custom.input_schema: Field required")
            elif schema.get("type") != "object":
                problems.append(f"{where}.custom.input_schema.type: Input should be 'object'")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict):
            problems.append(f"tool_choice: Input should be a valid dictionary, got {type_name(choice)}")
        elif choice.get("type") not in ("auto", "any", "tool", "none"):
            problems.append(
                "tool_choice.type: Input tag found using 'type' does not match any of the expected tags: "
                "'auto', 'any', 'tool', 'none'"
            )
        elif choice["type"] == "tool" and choice.get("name") not in names:
            problems.append(f"tool_choice.name: tool {choice.get('name')!r} is not among the tools")
    return problems


# -- what was asked ---------------------------------------------------------------------------


def _block_text(block: Any) -> str:
    if not isinstance(block, dict):
        return ""
    if block.get("type") == "text":
        return str(block.get("text", ""))
    if block.get("type") == "tool_use":
        return f"{block.get('name', '')} {orjson.dumps(block.get('input', {})).decode()}"
    if block.get("type") == "tool_result":
        content = block.get("content")
        return content if isinstance(content, str) else " ".join(_block_text(b) for b in content or ())
    return ""


def prompt(body: Json) -> Prompt:
    """Cached tokens: the prefix up to the last block marked ``cache_control``, as Anthropic
    reads it from its cache (reported as a cache hit: this mock never reports writes)."""
    total = cached = 0
    system = body.get("system")
    segments: list[tuple[int, bool]] = []  # (tokens, marked for caching)
    if isinstance(system, str):
        segments.append((count_tokens(system), False))
    elif isinstance(system, list):
        segments += [(count_tokens(_block_text(b)), isinstance(b, dict) and "cache_control" in b) for b in system]
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    for message in messages:
        content = message.get("content")
        segments.append((MESSAGE_OVERHEAD_TOKENS, False))
        if isinstance(content, str):
            segments.append((count_tokens(content), False))
        elif isinstance(content, list):
            segments += [(count_tokens(_block_text(b)), isinstance(b, dict) and "cache_control" in b) for b in content]
    for tokens, marked in segments:
        total += tokens
        if marked:
            cached = total
    asked = Prompt(prompt_tokens=total, cached_tokens=cached)
    if messages and messages[-1].get("role") == "user":
        content = messages[-1].get("content")
        blocks = content if isinstance(content, list) else []
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            asked.tool_result = _block_text(results[-1])
        elif isinstance(content, str):
            asked.last_user = content
        else:
            asked.last_user = " ".join(_block_text(b) for b in blocks)
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and isinstance(tool.get("name"), str) and tool.get("type") in (None, "custom"):
            schema = tool.get("input_schema")
            asked.tools.append((tool["name"], schema if isinstance(schema, dict) else {}))
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        asked.tool_choice = {"none": "none", "any": "any", "tool": str(choice.get("name"))}.get(str(choice.get("type")))
    limit = body.get("max_tokens")
    asked.max_tokens = limit if is_int(limit) else None
    asked.stop = [s for s in body.get("stop_sequences") or () if isinstance(s, str)]
    config = body.get("output_config")
    output_format = config.get("format") if isinstance(config, dict) else None
    if isinstance(output_format, dict) and isinstance(output_format.get("schema"), dict):
        asked.json_mode = True
        asked.json_schema = output_format["schema"]
    return asked


# -- answers ----------------------------------------------------------------------------------


def _usage(answer: Answer) -> Json:
    return {
        "input_tokens": answer.prompt_tokens - answer.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": answer.cached_tokens,
        "output_tokens": answer.completion_tokens,
        "service_tier": "standard",
    }


def _ids(seq: int) -> tuple[str, str]:
    return f"msg_mock{seq:016d}", f"toolu_mock{seq:016d}"


def render_message(model: str, seq: int, answer: Answer, *, usage: bool) -> bytes:
    message_id, tool_id = _ids(seq)
    content: list[Json] = []
    if answer.text:
        content.append({"type": "text", "text": answer.text})
    if answer.tool_name is not None:
        content.append({"type": "tool_use", "id": tool_id, "name": answer.tool_name, "input": answer.tool_arguments})
    message: Json = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS[answer.finish],
        "stop_sequence": answer.stop_sequence,
    }
    if usage:
        message["usage"] = _usage(answer)
    return orjson.dumps(message)


def _event(name: bytes, data: Json) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream_events(model: str, seq: int, answer: Answer, *, usage: bool) -> list[bytes]:
    message_id, tool_id = _ids(seq)
    start: Json = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage:
        start["usage"] = {**_usage(answer), "output_tokens": 1}
    events = [_event(b"message_start", {"type": "message_start", "message": start})]
    index = 0
    if answer.text or answer.tool_name is None:
        events.append(
            _event(
                b"content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        events.append(_event(b"ping", {"type": "ping"}))
        for piece in answer.pieces:
            events.append(
                _event(
                    b"content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
            )
        events.append(_event(b"content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    if answer.tool_name is not None:
        block = {"type": "tool_use", "id": tool_id, "name": answer.tool_name, "input": {}}
        events.append(
            _event(b"content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        )
        for piece in answer.argument_pieces():
            events.append(
                _event(
                    b"content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
            )
        events.append(_event(b"content_block_stop", {"type": "content_block_stop", "index": index}))
    delta: Json = {
        "type": "message_delta",
        "delta": {"stop_reason": STOP_REASONS[answer.finish], "stop_sequence": answer.stop_sequence},
    }
    if usage:
        delta["usage"] = {"output_tokens": answer.completion_tokens}
    events.append(_event(b"message_delta", delta))
    events.append(_event(b"message_stop", {"type": "message_stop"}))
    return events


def broken_event() -> bytes:
    return b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"type": \n\n'
