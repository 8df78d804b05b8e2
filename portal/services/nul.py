"""PostgreSQL stores no NUL character in text or JSON (JSON may spell it ``\\u0000``), so
input holding one is refused where it enters, as a clear error rather than a 500 at save."""

from __future__ import annotations

from typing import Any


def holds_nul(value: Any) -> bool:
    """True when a string anywhere in ``value`` (nested dicts, their keys, and lists) holds NUL."""
    pending = [value]
    while pending:  # a loop, not recursion: documents may nest deeper than Python's stack
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
