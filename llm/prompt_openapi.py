"""The OpenAPI document of a prompt API version, generated when it is published.

OpenAPI 3.1, whose schema objects *are* JSON Schema 2020-12 (the dialect of the input and
output schemas), so they are used as written; Swagger UI 5 (the docs page) renders 3.1.
One ``POST`` at the version's base path: the request body is the input schema with an
example generated from it, 200 is ``{"output", "usage", "model"}`` (``output`` typed by the
output schema in JSON mode, a string in text mode) or an event stream with ``"stream": true``,
and the gateway's own refusals (401, 403, 410, 422, 429, 502) with its error shape.

The operation's path is the whole base path and the server the gateway's root: the client
posts to exactly ``<gateway><base path>`` (a path of "/" under a base-path server would add a
trailing slash). ``portal.services.catalog.try_it_document`` keeps that for prompt APIs.

No Django import: a pure function of the version's data, tested on its own.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from llm.prompts import schema_errors

OPENAPI_VERSION = "3.1.0"
KEY_SCHEME = "PorticoKey"  # the name portal.services.catalog gives it, so try-it authorizes it
BEARER_SCHEME = "PorticoBearer"
KEY_HEADER = "X-API-Key"  # gateway/auth.py also takes "Authorization: Bearer <key>"
STREAM_FIELD = "stream"
MAX_EXAMPLE_DEPTH = 8
# An author's schema is small (64 KB) but may ask for a lot: "minLength": 3000000000, or
# arrays of arrays (or a $ref to itself) whose minItems multiply. The example built from it
# (on every prompt page, and when published) stays within these, whatever the schema says.
MAX_EXAMPLE_NODES = 1_000
MAX_EXAMPLE_CHARS = 1_000
_SCHEMA_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    """A local ``$ref`` (``#/...``) followed once; anything else as it is."""
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/"):
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                return {}
            target = target[part]
        return target
    return schema


def example_of(schema: Any, root: dict[str, Any] | None = None, depth: int = 0, budget: list[int] | None = None) -> Any:
    """A value satisfying the usual constraints of ``schema``: its ``examples`` first, then
    ``default``, ``const``, the first ``enum`` value, else one built from the type and its
    bounds (lengths, ranges, item counts). Recursion stops at MAX_EXAMPLE_DEPTH, and the
    whole example at MAX_EXAMPLE_NODES values (``budget``: what is left of them); a string
    is at most MAX_EXAMPLE_CHARS long. (An example cut short may not satisfy its schema:
    the document leaves such an example out.)"""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    budget = budget if budget is not None else [MAX_EXAMPLE_NODES]
    budget[0] -= 1
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > MAX_EXAMPLE_DEPTH or budget[0] < 0:
        return None
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return copy.deepcopy(examples[0])
    for key in ("default", "const"):
        if key in schema:
            return copy.deepcopy(schema[key])
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return copy.deepcopy(enum[0])
    for combinator in ("allOf", "anyOf", "oneOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            if combinator == "allOf":
                merged: dict[str, Any] = {}
                for option in options:
                    part = _resolve(option, root)
                    if isinstance(part, dict):
                        merged.update(part)
                return example_of(
                    {**{k: v for k, v in schema.items() if k != "allOf"}, **merged}, root, depth + 1, budget
                )
            return example_of(options[0], root, depth + 1, budget)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            properties = {}
        return {name: example_of(sub, root, depth + 1, budget) for name, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems") or 0))
        maximum = schema.get("maxItems")
        if isinstance(maximum, int):
            count = min(count, maximum)
        return [example_of(schema.get("items", {}), root, depth + 1, budget) for _ in range(min(count, 10))]
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema)


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    exclusive_low, exclusive_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = 1 if integer else 0.5
    value: float = 0
    if isinstance(low, int | float):
        value = low
    elif isinstance(exclusive_low, int | float):
        value = exclusive_low + step
    elif isinstance(high, int | float) and high < 0:
        value = high
    elif isinstance(exclusive_high, int | float) and exclusive_high <= 0:
        value = exclusive_high - step
    return int(value) if integer else value


def _string(schema: dict[str, Any]) -> str:
    formats = {
        "email": "user@example.com",
        "uri": "https://example.com/",
        "date": "2026-01-31",
        "date-time": "2026-01-31T12:00:00Z",
        "uuid": "123e4567-e89b-12d3-a456-426614174000",
    }
    text = formats.get(str(schema.get("format")), "example")
    low = schema.get("minLength")
    if isinstance(low, int) and len(text) < low:
        low = min(low, MAX_EXAMPLE_CHARS)
        text = (text + " ") * (low // (len(text) + 1) + 1)
        text = text[: max(low, 1)]
    high = schema.get("maxLength")
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _relocated(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """``schema`` as ``#/components/schemas/<name>``: its local references (written against
    the schema's own root, e.g. ``#/$defs/x``) rewritten to point inside it there, and its
    ``$id`` dropped (it would change the base every reference resolves against)."""
    prefix = f"#/components/schemas/{name}"

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, sub in value.items():
                if key in ("$ref", "$dynamicRef") and isinstance(sub, str) and sub.startswith("#"):
                    out[key] = prefix + sub[1:]
                elif key == "$id":
                    continue
                else:
                    out[key] = walk(sub)
            return out
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    result: dict[str, Any] = walk(copy.deepcopy(schema))
    result.pop("$schema", None)  # 3.1's default dialect is 2020-12 already
    return result


def _error(description: str, *, fields: bool = False) -> dict[str, Any]:
    error: dict[str, Any] = {
        "type": "object",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "required": ["code", "message"],
    }
    if fields:
        error["properties"]["fields"] = {
            "type": "array",
            "description": "One entry per offending field, by JSON path.",
            "items": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                "required": ["path", "message"],
            },
        }
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"error": error}, "required": ["error"]},
            }
        },
    }


def build_document(
    *,
    title: str,
    version: str,
    description: str,
    base_path: str,
    input_schema: dict[str, Any],
    output_mode: str,
    output_schema: dict[str, Any] | None,
    server_url: str,
    model: str = "",
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one prompt API version."""
    component = _SCHEMA_NAME.sub("_", title).strip("_") or "Prompt"
    input_name, output_name = f"{component}Input", f"{component}Output"
    schemas: dict[str, Any] = {input_name: _relocated(input_schema, input_name)}
    if output_mode == "json" and output_schema:
        schemas[output_name] = _relocated(output_schema, output_name)
        output: dict[str, Any] = {"$ref": f"#/components/schemas/{output_name}"}
    else:
        output = {"type": "string", "description": "The model's answer as text."}
    schemas["Usage"] = {
        "type": "object",
        "properties": {
            "prompt_tokens": {"type": "integer", "minimum": 0},
            "completion_tokens": {"type": "integer", "minimum": 0},
            "total_tokens": {"type": "integer", "minimum": 0},
            "cost_usd": {"type": "number", "minimum": 0, "description": "Left out when a price is unknown."},
        },
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    }
    schemas["Answer"] = {
        "type": "object",
        "properties": {
            "output": output,
            "usage": {"$ref": "#/components/schemas/Usage"},
            "model": {
                "type": "string",
                "description": "The model route (alias) that ran the prompt; X-Portico-Model names the upstream model.",
            },
        },
        "required": ["output", "usage", "model"],
    }
    example = example_of(input_schema)
    # A generated example the schema refuses (a pattern, multipleOf, a tricky combination)
    # would teach callers a 422: leave it out and let the docs show the schema alone.
    request_media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{input_name}"}}
    if not schema_errors(input_schema, example):
        request_media["example"] = example
    stream_note = (
        f'Add `"{STREAM_FIELD}": true` to the body for a `text/event-stream` of output deltas '
        "followed by a final usage event."
    )
    operation: dict[str, Any] = {
        "operationId": f"run_{component}",
        "summary": title,
        "description": "\n\n".join(part for part in (description.strip(), stream_note) if part),
        "requestBody": {
            "required": True,
            "content": {"application/json": request_media},
        },
        "responses": {
            "200": {
                "description": "The answer, with token usage and the model that gave it.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Answer"}},
                    "text/event-stream": {
                        "schema": {
                            "type": "string",
                            "description": (
                                'With "stream": true: data events {"type": "delta", "text"}, then '
                                '{"type": "usage", "usage", "model"}, then [DONE]; a failure after the start is '
                                '{"type": "error", "error"} and no [DONE].'
                            ),
                        }
                    },
                },
            },
            "400": _error("The body is not JSON, or nests too deeply."),
            "401": _error("No API key, or an unknown, revoked or expired one."),
            "403": _error("The key's application has no approved subscription to this API."),
            "410": _error("This version is retired."),
            "422": _error("The body does not satisfy the input schema.", fields=True),
            "413": _error("The body is larger than this version accepts."),
            "429": _error("A plan limit, quota or token budget is exhausted (see Retry-After)."),
            "502": _error(
                "The model failed, or its answer did not satisfy the output schema after one repair "
                "(invalid_model_output, with fields).",
                fields=True,
            ),
        },
    }
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description or title},
        "servers": [{"url": server_url.rstrip("/") or "/"}],
        "paths": {base_path: {"post": operation}},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                KEY_SCHEME: {"type": "apiKey", "in": "header", "name": KEY_HEADER},
                BEARER_SCHEME: {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
            },
        },
        "security": [{KEY_SCHEME: []}, {BEARER_SCHEME: []}],
    }
    if model:
        document["info"]["x-portico-model-route"] = model
    return document
