"""Local ``$ref`` resolution (RFC 6901 JSON Pointer in a URI fragment), for the schemas and
documents teams upload: prompt API schemas (``llm/prompts.py``) and OpenAPI documents made
into MCP tools (``gateway/mcptools.py``). Nothing here fetches: a reference that is not
local, or names nothing, resolves to None."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote


def resolve_local(document: Any, ref: str) -> Any:
    """The node ``ref`` (``#``, or ``#/a/b/0``) names in ``document``, or None."""
    if not ref.startswith("#"):
        return None
    fragment = unquote(ref[1:])
    if not fragment:
        return document
    if not fragment.startswith("/"):
        return None  # an anchor (#name), not a pointer
    node = document
    for token in fragment[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        # isascii: str.isdigit() also passes '²', which int() refuses.
        elif isinstance(node, list) and token.isascii() and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node
