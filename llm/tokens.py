"""Token estimates for when a provider reports no usage, and for budget reservations.

``tiktoken`` cannot be used (it downloads its encodings at run time), so the count follows a
fixed rule shaped like the byte-pair encodings of OpenAI's chat models (``cl100k_base``,
``o200k_base``), which split text into pieces before merging bytes:

- a run of Latin letters is one token up to 8 letters, then one per 5 letters (common words
  are single tokens; long or rare words split into pieces of about 4-5 letters);
- a run of other alphabetic letters (Cyrillic, Greek, Arabic, Hebrew, Indic, ...) costs one
  token per 2.5 letters;
- a CJK ideograph, kana or hangul syllable is one token each;
- digits go by groups of three (the encoders split numbers so);
- a run of punctuation or symbols is one token per 2 characters (at least one), except a
  single one right before a letter, which joins that word ("-line", "_user", "'s");
- whitespace: a single space or newline is folded into the next word (" word" is one
  token) except before a digit, where it stands alone; a longer run is one token;
- any other character (emoji, ...) is one token.

Chat overhead as OpenAI documents it (cookbook "How to count tokens with tiktoken"): 3 tokens
per message, plus its role, plus the name and 1 more when a message has one, plus 3 that
prime the reply. Tools (their JSON), ``response_format`` schemas and tool-call arguments are
counted as text. An image part counts 85 tokens at ``detail: low`` and 765 otherwise (a
1024x1024 image at high detail); an audio or file part a flat 256.

Accuracy is checked in ``tests/llm/test_tokens.py`` against counts OpenAI published in that
cookbook (cl100k_base): the rule lands within 15 % on its 6-message conversation and within a
few tokens on its short strings. It is an estimate: records carrying it are marked
estimated, and budgets reconcile against real usage when there is some.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llm.canonical import Json

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOKENS_PER_TOOL_CALL = 3
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_HIGH = 765
OTHER_PART_TOKENS = 256
MAX_COMPLETION_TOKENS = 1_000_000_000  # no model writes more; keeps a hostile value out of Redis

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_PIECES = re.compile(
    r"(?P<latin>[A-Za-z]+)"
    rf"|(?P<cjk>[{_CJK}])"
    r"|(?P<digits>[0-9]+)"
    r"|(?P<space>\s+)"
    rf"|(?P<letters>[^\W\d_{_CJK}A-Za-z]+)"
    r"|(?P<symbols>[!-/:-@\[-`{-~]+)"
    r"|(?P<other>.)",
    re.DOTALL,
)


def _latin(length: int) -> int:
    return 1 if length <= 8 else -(-length // 5)


def estimate_text_tokens(text: str) -> int:
    """Tokens in ``text`` by the rule above (0 for the empty string)."""
    if not isinstance(text, str) or not text:
        return 0
    total = 0
    for piece in _PIECES.finditer(text):
        kind = piece.lastgroup
        length = piece.end() - piece.start()
        if kind == "latin":
            total += _latin(length)
        elif kind == "cjk" or kind == "other":
            total += 1
        elif kind == "digits":
            total += -(-length // 3)
        elif kind == "space":
            if length > 1 or piece.end() < len(text) and text[piece.end()].isdigit():
                total += 1
        elif kind == "letters":
            total += -(-length * 2 // 5)
        elif length == 1 and piece.end() < len(text) and text[piece.end()].isalpha():
            pass  # "-line", "_user", "'s": one symbol joins the word after it
        else:  # symbols
            total += -(-length // 2)
    return total


def _json_tokens(value: Any) -> int:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):
        return 0
    return estimate_text_tokens(text)


def _part_tokens(part: Any) -> int:
    if isinstance(part, str):
        return estimate_text_tokens(part)
    if not isinstance(part, dict):
        return 0
    kind = part.get("type")
    if isinstance(part.get("text"), str):
        return estimate_text_tokens(part["text"])
    if kind == "image_url":
        image = part.get("image_url")
        detail = image.get("detail") if isinstance(image, dict) else None
        return IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return estimate_text_tokens(part["refusal"])
    return OTHER_PART_TOKENS


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return estimate_text_tokens(content)
    if isinstance(content, list):
        return sum(_part_tokens(part) for part in content)
    return 0


def _tool_call_tokens(call: Any) -> int:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return 0
    name = function.get("name")
    arguments = function.get("arguments")
    return (
        TOKENS_PER_TOOL_CALL
        + (estimate_text_tokens(name) if isinstance(name, str) else 0)
        + (estimate_text_tokens(arguments) if isinstance(arguments, str) else 0)
    )


def _message_tokens(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    total = TOKENS_PER_MESSAGE
    role = message.get("role")
    if isinstance(role, str):
        total += estimate_text_tokens(role)
    name = message.get("name")
    if isinstance(name, str) and name:
        total += estimate_text_tokens(name) + TOKENS_PER_NAME
    total += _content_tokens(message.get("content"))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        total += sum(_tool_call_tokens(call) for call in calls)
    if isinstance(message.get("function_call"), dict):
        total += _tool_call_tokens({"function": message["function_call"]})
    return total


def estimate_prompt_tokens(request: Json) -> int:
    """Prompt tokens of a canonical chat request (or an embeddings request's ``input``)."""
    total = 0
    messages = request.get("messages")
    if isinstance(messages, list):
        total += sum(_message_tokens(message) for message in messages) + REPLY_PRIMING
    for key in ("tools", "functions"):
        if request.get(key):
            total += _json_tokens(request[key])
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and "json_schema" in response_format:
        total += _json_tokens(response_format["json_schema"])
    embedding_input = request.get("input")
    if isinstance(embedding_input, str):
        total += estimate_text_tokens(embedding_input)
    elif isinstance(embedding_input, list):
        for item in embedding_input:
            if isinstance(item, str):
                total += estimate_text_tokens(item)
            elif isinstance(item, int) and not isinstance(item, bool):
                total += 1  # already a token id
            elif isinstance(item, list):
                total += len(item)  # a list of token ids
    return total


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return min(value, MAX_COMPLETION_TOKENS)


def estimate_max_completion(request: Json, default: int) -> int:
    """The most completion tokens the request may use: ``max_completion_tokens`` (OpenAI's
    current name), else ``max_tokens``, else the route's ``default``; times ``n`` choices.
    Non-positive, non-integer or boolean values count as absent."""
    limit = _positive_int(request.get("max_completion_tokens"))
    if limit is None:
        limit = _positive_int(request.get("max_tokens"))
    if limit is None:
        limit = max(default, 0)
    choices = _positive_int(request.get("n")) or 1
    return min(limit * min(choices, 128), MAX_COMPLETION_TOKENS)


class StreamTokenCounter:
    """Counts the completion tokens of a stream by the same rule, delta by delta. Text is
    counted up to its last whitespace (the rule's pieces never span whitespace but a space
    joins the word after it), the rest waits for the next delta; a tail longer than 256
    characters without whitespace is counted as it stands."""

    _MAX_PENDING = 256

    def __init__(self) -> None:
        self._counted = 0
        self._pending = ""

    def feed(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            return
        pending = self._pending + text
        cut = max(pending.rfind(" "), pending.rfind("\n"), pending.rfind("\t"))
        while cut > 0 and pending[cut - 1].isspace():  # keep a whitespace run whole
            cut -= 1
        if cut > 0:
            self._counted += estimate_text_tokens(pending[:cut])
            pending = pending[cut:]
        if len(pending) > self._MAX_PENDING:
            self._counted += estimate_text_tokens(pending)
            pending = ""
        self._pending = pending

    def feed_chunk(self, chunk: Json) -> None:
        """Every text a canonical chunk carries: each choice's content, refusal and tool-call
        name and arguments (names and a per-call overhead once, when a call starts)."""
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            for key in ("content", "refusal"):
                if isinstance(delta.get(key), str):
                    self.feed(delta[key])
            calls = delta.get("tool_calls")
            if not isinstance(calls, list):
                continue
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict):
                    continue
                if isinstance(function.get("name"), str):
                    self._counted += TOKENS_PER_TOOL_CALL + estimate_text_tokens(function["name"])
                if isinstance(function.get("arguments"), str):
                    self.feed(function["arguments"])

    @property
    def tokens(self) -> int:
        return self._counted + estimate_text_tokens(self._pending)
