"""What the mock answers, as a pure function of the request: the text, its stream pieces,
token counts, tool calls, JSON answers and embedding vectors.

Every wire format first reduces its request to a ``Prompt`` (what was asked), then renders
the one ``Answer`` computed here, so the same question gets the same answer and the same
counts whichever format carried it.

Token rule (the mock's own, documented so tests can compute expectations): a token is a
run of word characters or one other non-space character (``\\w+|[^\\w\\s]``). A prompt
counts the tokens of every text it carries (system, messages, tool calls and tool
results) plus 4 per message. Cached prompt tokens: a system prompt of at least
``CACHE_MIN_TOKENS`` tokens counts as read from the provider's prompt cache (it stands
for a stable prefix); Anthropic instead reports the prefix up to its last
``cache_control`` marker, as Anthropic does.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

Json = dict[str, Any]

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# The same tokens with the whitespace before each kept, so the pieces join back into the text.
PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])")
MESSAGE_OVERHEAD_TOKENS = 4
CACHE_MIN_TOKENS = 32
SNIPPET_CHARS = 60
TOOL_TRIGGER = "call tool"
EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_DIMENSIONS = 4096
ARGUMENT_PIECE_CHARS = 8


def count_tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text))


def snippet(text: str) -> str:
    collapsed = " ".join(text.split())
    return collapsed if len(collapsed) <= SNIPPET_CHARS else collapsed[:SNIPPET_CHARS] + "..."


@dataclass(slots=True)
class Prompt:
    """What a request asks, independent of its wire format."""

    last_user: str | None = None  # text of the last message when it is the user's own words
    tool_result: str | None = None  # text of the last message when it returns a tool's result
    prompt_tokens: int = 0  # every input token, cached ones included
    cached_tokens: int = 0
    tools: list[tuple[str, Json]] = field(default_factory=list)  # (name, parameters JSON schema)
    tool_choice: str | None = None  # None: auto; "none"; "any": some tool; else a tool's name
    json_mode: bool = False
    json_schema: Json | None = None  # with json_mode: the schema the answer must match
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Answer:
    text: str  # the assistant's text ("" for a bare tool call)
    pieces: list[str]  # the text's stream deltas, one token each
    finish: str  # stop | length | stop_sequence | tool
    stop_sequence: str | None
    tool_name: str | None
    tool_arguments: Json
    tool_arguments_text: str  # tool_arguments as compact JSON
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int

    def argument_pieces(self) -> list[str]:
        text = self.tool_arguments_text
        return [text[i : i + ARGUMENT_PIECE_CHARS] for i in range(0, len(text), ARGUMENT_PIECE_CHARS)] or [""]


OFF_SCHEMA_TEXT = "Sure! The answer is positive, I think."


def with_text(said: Answer, text: str) -> Answer:
    """The same answer saying ``text`` instead (the ``off_schema`` fault)."""
    pieces = PIECE_RE.findall(text)
    return replace(said, text=text, pieces=pieces, finish="stop", completion_tokens=len(pieces))


def value_for_schema(schema: Any, text: str, depth: int = 0) -> Any:
    """A value that satisfies a (simple) JSON schema: strings are ``text``."""
    if not isinstance(schema, dict) or depth > 8:
        return text
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for combinator in ("anyOf", "oneOf", "allOf", "any_of"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            return value_for_schema(options[0], text, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind).lower() if kind is not None else ("object" if "properties" in schema else "string")
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: value_for_schema(sub, text, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [value_for_schema(schema.get("items"), text, depth + 1)]
    if kind in ("integer", "number"):
        # Within the bounds the schema sets, so a structured answer conforms.
        low = schema.get("minimum")
        high = schema.get("maximum")
        value: Any = 1 if kind == "integer" else 1.5
        if isinstance(low, int | float) and not isinstance(low, bool) and value < low:
            value = low
        if isinstance(high, int | float) and not isinstance(high, bool) and value > high:
            value = high
        return value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    limit = schema.get("maxLength")
    return text[:limit] if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else text


def answer(kind: str, prompt: Prompt, *, preface_tool_call: bool = False) -> Answer:
    """The deterministic answer. ``preface_tool_call``: say a sentence before a tool call
    (Claude does; the OpenAI and Gemini formats answer with the call alone)."""
    tool = _chosen_tool(prompt)
    if tool is not None:
        name, parameters = tool
        arguments = value_for_schema(parameters, "mock") if parameters else {}
        if not isinstance(arguments, dict):
            arguments = {"value": arguments}
        arguments_text = orjson.dumps(arguments).decode()
        text = f"Calling {name}." if preface_tool_call else ""
        pieces = PIECE_RE.findall(text)
        return Answer(
            text=text,
            pieces=pieces,
            finish="tool",
            stop_sequence=None,
            tool_name=name,
            tool_arguments=arguments,
            tool_arguments_text=arguments_text,
            prompt_tokens=prompt.prompt_tokens,
            cached_tokens=prompt.cached_tokens,
            completion_tokens=len(pieces) + count_tokens(name) + count_tokens(arguments_text),
        )
    if prompt.last_user is not None:
        text = f"Mock {kind} answer to: {snippet(prompt.last_user) or '(no text)'}"
    elif prompt.tool_result is not None:
        text = f"Mock {kind} answer to tool result: {snippet(prompt.tool_result) or '(empty)'}"
    else:
        text = f"Mock {kind} answer."
    if prompt.json_mode:
        value = value_for_schema(prompt.json_schema, text) if prompt.json_schema else {"answer": text}
        text = orjson.dumps(value).decode()
    finish, stop_sequence = "stop", None
    cut = min(((text.find(s), s) for s in prompt.stop if s and s in text), default=None)
    if cut is not None:
        text, stop_sequence, finish = text[: cut[0]], cut[1], "stop_sequence"
    pieces = PIECE_RE.findall(text)
    if prompt.max_tokens is not None and len(pieces) > prompt.max_tokens:
        pieces = pieces[: prompt.max_tokens]
        text, finish, stop_sequence = "".join(pieces), "length", None
    return Answer(
        text=text,
        pieces=pieces,
        finish=finish,
        stop_sequence=stop_sequence,
        tool_name=None,
        tool_arguments={},
        tool_arguments_text="",
        prompt_tokens=prompt.prompt_tokens,
        cached_tokens=prompt.cached_tokens,
        completion_tokens=len(pieces),
    )


def _chosen_tool(prompt: Prompt) -> tuple[str, Json] | None:
    if not prompt.tools or prompt.tool_choice == "none":
        return None
    if prompt.tool_choice not in (None, "any"):
        for name, parameters in prompt.tools:
            if name == prompt.tool_choice:
                return name, parameters
    if prompt.tool_choice is not None or (prompt.last_user is not None and TOOL_TRIGGER in prompt.last_user.lower()):
        return prompt.tools[0]
    return None


def embedding(model: str, text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic vector in [-1, 1) from a hash of the model and the text."""
    dimensions = max(1, min(dimensions, MAX_EMBEDDING_DIMENSIONS))
    digest = hashlib.shake_256(f"{model}\0{text}".encode()).digest(4 * dimensions)
    return [round(int.from_bytes(digest[4 * i : 4 * i + 4], "little") / 2**31 - 1.0, 6) for i in range(dimensions)]
