"""Small helpers the conformance checks share: type names and number checks."""

from __future__ import annotations

from typing import Any


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number_problem(name: str, value: Any, low: float, high: float | None, *, integer: bool = False) -> str | None:
    """An OpenAI-worded problem when ``value`` is not a number in [low, high]."""
    if integer and not is_int(value):
        return f"Invalid type for '{name}': expected an integer, but got {type_name(value)} instead."
    if not is_number(value):
        return f"Invalid type for '{name}': expected a number, but got {type_name(value)} instead."
    kind = "integer" if integer else "decimal"
    if value < low:
        return f"Invalid '{name}': {kind} below minimum value. Expected a value >= {low:g}, but got {value} instead."
    if high is not None and value > high:
        return f"Invalid '{name}': {kind} above maximum value. Expected a value <= {high:g}, but got {value} instead."
    return None
