"""Checks shared by the inbound formats: every check raises InvalidRequest naming the
offending parameter, so a hostile or broken body is a clear 400, never a crash.

Strings are refused when they hold a NUL character: nothing a model needs, and the call
log, prompt capture (Postgres text/jsonb cannot hold U+0000) and response headers
(``X-Portico-Model``) all break on it.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from llm.canonical import InvalidRequest, Json

# The largest token count we accept anywhere: beyond every model's window, small enough
# that budget reservations (tokens x price) stay exact integers.
MAX_TOKENS_LIMIT = 2**31 - 1


def load_object(body: bytes | bytearray | memoryview) -> Json:
    """The body as a JSON object. orjson refuses invalid UTF-8, lone surrogates, NaN and
    Infinity, nesting deeper than 1024 and integers beyond 64 bits (they become floats,
    which the typed checks then refuse where an integer is due)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not {json_type(value)}.")
    return value


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__  # pragma: no cover - orjson yields JSON types only


def wrong_type(param: str, expected: str, value: object) -> InvalidRequest:
    return InvalidRequest(f"Invalid type for '{param}': expected {expected}, got {json_type(value)}.", param)


def text(value: object, param: str, *, allow_empty: bool = True, max_length: int | None = None) -> str:
    """A string without NUL characters."""
    if not isinstance(value, str):
        raise wrong_type(param, "a string", value)
    if not allow_empty and not value:
        raise InvalidRequest(f"'{param}' must not be empty.", param)
    if max_length is not None and len(value) > max_length:
        raise InvalidRequest(f"'{param}' is too long: at most {max_length} characters.", param)
    if "\x00" in value:
        raise InvalidRequest(f"'{param}' contains a NUL character.", param)
    return value


def identifier(value: object, param: str) -> str:
    """A non-empty name (model, tool name, tool call id): no NUL and no other control
    characters, at most 256 characters (it may end up in a header or a log key)."""
    name = text(value, param, allow_empty=False, max_length=256)
    if not name.isprintable():
        raise InvalidRequest(f"'{param}' contains control characters.", param)
    return name


def obj(value: object, param: str) -> Json:
    if not isinstance(value, dict):
        raise wrong_type(param, "an object", value)
    return value


def array(value: object, param: str, *, allow_empty: bool = True) -> list[Any]:
    if not isinstance(value, list):
        raise wrong_type(param, "an array", value)
    if not allow_empty and not value:
        raise InvalidRequest(f"'{param}' must not be empty.", param)
    return value


def boolean(value: object, param: str) -> bool:
    if not isinstance(value, bool):
        raise wrong_type(param, "a boolean", value)
    return value


def number(value: object, param: str, low: float, high: float) -> float:
    """A finite number within [low, high] (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(param, "a number", value)
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidRequest(f"'{param}' must be between {low:g} and {high:g}, got {value!r}.", param)
    return value


def integer(value: object, param: str, low: int, high: int) -> int:
    """An integer within [low, high]. An integral float (``5.0``, as Python's json writes
    it) is accepted and converted; ``5.5`` and huge numbers are refused."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(param, "an integer", value)
    if not low <= value <= high:
        raise InvalidRequest(f"'{param}' must be between {low} and {high}, got {value}.", param)
    return value


def one_of(value: object, param: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise InvalidRequest(f"Invalid value for '{param}': expected one of {choices}, got {value!r:.80}.", param)
    return value


def stop_sequences(value: object, param: str) -> str | list[str]:
    """A stop string or a list of them."""
    if isinstance(value, str):
        return text(value, param, allow_empty=False)
    items = array(value, param)
    return [text(item, f"{param}[{i}]", allow_empty=False) for i, item in enumerate(items)]
