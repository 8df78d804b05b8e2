"""MCP tools from the catalog: one tool per operation of an API version, compiled once per
snapshot, and the HTTP request a tool call's arguments make.

Pure (no Django, no I/O): ``gateway/snapshot.py`` feeds it the versions it loaded, and
``gateway/mcp.py`` asks it for an application's tools and for the request of a call.

Every document here is treated as hostile input, even though a provider wrote it: ``$ref``
is followed only inside the document (``#/...``, never a URL or a file), with a depth cap
and a node budget (a chain of references that doubles at each step cannot explode), and
every name, description and schema is bounded. A tool argument is hostile too: it reaches
the upstream only percent-encoded, as one path segment, one query value or one header
value, so it cannot leave the API's base path, add a segment or split a header.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from llm.jsonpointer import resolve_local

if TYPE_CHECKING:
    from gateway.snapshot import Route

log = logging.getLogger("portico.gateway")

# Names are what OpenAI's and Anthropic's tool APIs accept (the MCP rules allow '.' too):
# an agent passes our tool names on to a model, so they must survive that.
MAX_NAME = 64
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_UNDERSCORES = re.compile(r"__+")
MAX_DESCRIPTION = 2000
MAX_TOOLS_PER_VERSION = 256
MAX_REF_DEPTH = 8  # nested $ref expansions along one branch (a cycle is cut at its first repeat)
MAX_NESTING = 48  # schema nesting, refs or not (Python recursion stays far from its limit)
MAX_SCHEMA_NODES = 5000  # per tool: what a list of tools may cost a client (and us, to encode)
# Per version, shared by its tools: every worker builds every version's tools at start, so a
# document whose 256 operations each expand to MAX_SCHEMA_NODES must not cost each worker
# over a million nodes. Tools past the budget are listed with their schemas slimmed.
MAX_VERSION_NODES = 100_000
# A tool's tools/list entry, encoded. Nodes alone do not bound it: one huge string (a
# description, an enum value) that many operations reference is counted once per operation,
# so a 1 MiB document could make a 90 MB page. Over the cap, the schema is listed without
# its property schemas (the call is still checked by the API); a tool still over is left out.
MAX_TOOL_BYTES = 64 * 1024
METHODS = ("get", "put", "post", "delete", "patch")
# Headers a tool argument may never set: the gateway writes them itself, they carry the
# consumer's key, or they frame the request (a tool header is one value, never framing).
FORBIDDEN_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "cookie",
        "proxy-authorization",
        "proxy-connection",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
MAX_HEADER_VALUE = 8192
_TEMPLATE_VAR = re.compile(r"\{([^{}/]+)\}")
_DOT_SEGMENTS = frozenset({".", ".."})
# Literal parts of a document's path are sent as written, minus what is not wire-safe.
_PATH_SAFE = "/!$&'()*+,;=:@%-._~"


class ToolInputError(ValueError):
    """Arguments that make no request: answered as a tool error the model can correct."""


@dataclass(frozen=True, slots=True)
class Param:
    prop: str  # the property in the tool's inputSchema
    name: str  # the name on the wire
    location: str  # path | query | header
    required: bool


@dataclass(frozen=True, slots=True)
class McpTool:
    name: str
    api_id: int
    version_id: int
    kind: str  # "rest", or "prompt" (the whole arguments object is the request body)
    method: str
    path_template: str  # after the version's base path ("" for a prompt API)
    params: tuple[Param, ...] = ()
    body_prop: str = ""  # the property holding the JSON request body; "" when none
    body_required: bool = False
    definition: dict[str, Any] = field(default_factory=dict, compare=False)  # the tools/list entry
    size: int = field(default=0, compare=False)  # the entry's encoded bytes (tools/list pages by it)


@dataclass(frozen=True, slots=True)
class VersionSource:
    """What the snapshot knows of one live (published or deprecated) API version."""

    api_id: int
    api_slug: str
    api_name: str
    version_id: int
    version: str
    state: str
    document: Any  # ApiVersion.openapi: untrusted JSON
    kind: str = "rest"
    prompt_input_schema: Mapping[str, Any] | None = None  # kind "prompt": the version's input schema
    prompt_description: str = ""


@dataclass(frozen=True, slots=True)
class McpCatalog:
    """The tools of every live version, by name, and each application's tools in order."""

    by_name: dict[str, McpTool] = field(default_factory=dict)
    by_application: dict[int, tuple[McpTool, ...]] = field(default_factory=dict)
    apis_of_application: dict[int, frozenset[int]] = field(default_factory=dict)
    routes: dict[int, Route] = field(default_factory=dict)  # REST versions' routes, by version id

    def tools_for(self, application_id: int) -> tuple[McpTool, ...]:
        return self.by_application.get(application_id, ())

    def tool_for(self, application_id: int, name: str) -> McpTool | None:
        """The tool ``name`` if this application may see it: unknown, unsubscribed and
        retired tools all answer None, so a caller learns nothing about the others."""
        tool = self.by_name.get(name)
        if tool is None or tool.api_id not in self.apis_of_application.get(application_id, ()):
            return None
        return tool


EMPTY_CATALOG = McpCatalog()


# -- names ------------------------------------------------------------------------------------


def tool_name(*parts: str) -> str:
    """``slug_version_operation`` in the characters every tool-using model accepts; a name
    too long keeps its start and a hash of the whole, so two long names stay apart."""
    raw = "_".join(parts)
    name = _UNDERSCORES.sub("_", _NAME_UNSAFE.sub("_", raw)).strip("_") or "tool"
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9].rstrip('_')}_{digest}"
    return name


def _unique(name: str, taken: Mapping[str, Any], salt: str) -> str:
    if name not in taken:
        return name
    for n in range(2, 1000):
        candidate = f"{name[: MAX_NAME - 6]}_{n}"
        if candidate not in taken:
            return candidate
    return tool_name(name, salt)  # not reached in practice: a thousand clashes of one name


def _text(value: Any, limit: int = MAX_DESCRIPTION) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


# -- schemas ----------------------------------------------------------------------------------


class _SchemaTooLarge(Exception):
    pass


class _Budget:
    """Nodes a version's tools may still expand (MAX_VERSION_NODES)."""

    __slots__ = ("left",)

    def __init__(self, left: int = MAX_VERSION_NODES):
        self.left = left


class _Resolver:
    """Inlines local ``$ref``s of one document, within a node budget of one tool and the
    budget its version's tools share."""

    def __init__(self, document: Mapping[str, Any], budget: _Budget | None = None):
        self.document = document
        self.nodes = 0
        self.budget = budget or _Budget()

    def pointer(self, ref: str) -> Any:
        return resolve_local(self.document, ref)

    def resolve(self, node: Any, branch: tuple[str, ...] = (), depth: int = 0) -> Any:
        """``node`` with its local references inlined. ``branch`` holds the references being
        expanded above this node: a reference met again there is a cycle (a tree of
        categories), given as any value rather than expanded again."""
        self.nodes += 1
        self.budget.left -= 1
        if self.nodes > MAX_SCHEMA_NODES or self.budget.left < 0:
            raise _SchemaTooLarge
        if depth > MAX_NESTING:
            return {}
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if isinstance(ref, str):
                extra = {"description": node["description"]} if isinstance(node.get("description"), str) else {}
                if not ref.startswith("#"):
                    # Never fetched: a URL would make the gateway a fetcher of the provider's
                    # choosing, and a file path would read ours.
                    return {**extra, "description": extra.get("description", "(external schema not included)")}
                target = self.pointer(ref)
                if target is None or ref in branch or len(branch) >= MAX_REF_DEPTH:
                    return extra  # unknown, recursive or too deep: any value
                resolved = self.resolve(target, (*branch, ref), depth + 1)
                return {**resolved, **extra} if isinstance(resolved, dict) else resolved
            return {
                str(key): self.resolve(value, branch, depth + 1)
                for key, value in node.items()
                if key not in ("example", "examples", "xml", "externalDocs")
            }
        if isinstance(node, list):
            return [self.resolve(item, branch, depth + 1) for item in node]
        return node


_SWAGGER_PARAM_KEYS = (
    "type",
    "format",
    "items",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
)


def _param_schema(param: Mapping[str, Any], resolver: _Resolver) -> dict[str, Any]:
    schema = param.get("schema")
    if schema is None:  # Swagger 2.0: the schema's keywords sit on the parameter itself
        schema = {k: param[k] for k in _SWAGGER_PARAM_KEYS if k in param}
    resolved = resolver.resolve(schema)
    out = dict(resolved) if isinstance(resolved, dict) else {}
    description = _text(param.get("description"), 500)
    if description:
        out["description"] = description
    return out


def _json_body_schema(operation: Mapping[str, Any], resolver: _Resolver) -> tuple[Any, bool] | None:
    """The JSON request body's schema and whether it is required, or None (no JSON body)."""
    body = operation.get("requestBody")
    if isinstance(body, Mapping):
        if isinstance(body.get("$ref"), str):
            body = resolver.pointer(body["$ref"]) if body["$ref"].startswith("#/") else None
            if not isinstance(body, Mapping):
                return None
        content = body.get("content")
        if not isinstance(content, Mapping):
            return None
        for media, spec in content.items():
            media_type = str(media).split(";")[0].strip().lower()
            if media_type == "application/json" or (
                media_type.startswith("application/") and media_type.endswith("+json")
            ):
                schema = spec.get("schema", {}) if isinstance(spec, Mapping) else {}
                return resolver.resolve(schema), bool(body.get("required"))
        return None
    return None


# -- building the catalogue ---------------------------------------------------------------------


def _operations(document: Mapping[str, Any]) -> Iterable[tuple[str, str, Mapping[str, Any], list[Any]]]:
    paths = document.get("paths")
    if not isinstance(paths, Mapping):
        return
    for path, item in paths.items():
        if not isinstance(path, str) or not path.startswith("/") or not isinstance(item, Mapping):
            continue
        parameters = item.get("parameters")
        shared: list[Any] = parameters if isinstance(parameters, list) else []
        for method in METHODS:
            operation = item.get(method)
            if isinstance(operation, Mapping):
                yield path, method, operation, shared


def _rest_tool(
    source: VersionSource,
    path: str,
    method: str,
    operation: Mapping[str, Any],
    shared: list[Any],
    budget: _Budget | None = None,
) -> McpTool:
    document = source.document
    resolver = _Resolver(document, budget)
    # Operation parameters override the path item's of the same name and location.
    declared: dict[tuple[str, str], Mapping[str, Any]] = {}
    swagger_body: Mapping[str, Any] | None = None
    own = operation.get("parameters")
    for raw in [*shared, *(own if isinstance(own, list) else [])]:
        param = raw
        if isinstance(param, Mapping) and isinstance(param.get("$ref"), str) and param["$ref"].startswith("#/"):
            param = resolver.pointer(param["$ref"])
        if not isinstance(param, Mapping) or not isinstance(param.get("name"), str):
            continue
        location = param.get("in")
        if location == "body":
            swagger_body = param
        elif location in ("path", "query", "header"):
            declared[(param["name"], location)] = param
    for variable in _TEMPLATE_VAR.findall(path):  # a template variable nobody declared is still needed
        declared.setdefault((variable, "path"), {"name": variable, "in": "path", "required": True})

    properties: dict[str, Any] = {}
    required: list[str] = []
    params: list[Param] = []
    try:
        for (name, location), param in declared.items():
            if location == "header" and (name.lower() in FORBIDDEN_HEADERS or name.lower().startswith("x-portico-")):
                continue
            if location == "header" and not _TOKEN.match(name):
                continue
            prop = name if name not in properties and name != "body" else f"{location}_{name}"
            if prop in properties:
                continue
            is_required = location == "path" or bool(param.get("required"))
            properties[prop] = _param_schema(param, resolver)
            if is_required:
                required.append(prop)
            params.append(Param(prop, name, location, is_required))
        body: tuple[Any, bool] | None
        if swagger_body is not None:
            body = resolver.resolve(swagger_body.get("schema", {})), bool(swagger_body.get("required"))
        else:
            body = _json_body_schema(operation, resolver)
    except _SchemaTooLarge:
        # Too large to list: the parameters stay, typed as any value, and the body is any object.
        properties = {p.prop: {} for p in params}
        body = ({"type": "object"}, False) if operation.get("requestBody") or swagger_body else None
    body_prop = ""
    if body is not None:
        body_prop = "body"
        body_schema = body[0] if isinstance(body[0], dict) else {}
        body_description = _text(body_schema.get("description"), 500) or "The JSON request body."
        properties["body"] = {**body_schema, "description": body_description}
        if body[1]:
            required.append("body")

    summary = _text(operation.get("summary"), 300)
    details = _text(operation.get("description"))
    label = f"{source.api_name} {source.version}: {method.upper()} {path}"
    if source.state == "deprecated" or operation.get("deprecated") is True:
        label = f"[deprecated] {label}"
    description = "\n\n".join(part for part in (f"{label}. {summary}".rstrip(". ") + ".", details) if part)
    operation_id = operation.get("operationId")
    op_name = operation_id if isinstance(operation_id, str) and operation_id.strip() else f"{method}_{path}"
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    method_upper = method.upper()
    definition = {
        "name": "",  # set once the name is known to be unique
        "description": description[:MAX_DESCRIPTION],
        "inputSchema": schema,
        "annotations": {
            "title": summary or op_name[:100],
            "readOnlyHint": method_upper == "GET",
            "destructiveHint": method_upper == "DELETE",
            "idempotentHint": method_upper in ("GET", "PUT", "DELETE"),
            "openWorldHint": True,
        },
    }
    return McpTool(
        name=tool_name(source.api_slug, source.version, op_name),
        api_id=source.api_id,
        version_id=source.version_id,
        kind="rest",
        method=method_upper,
        path_template=path,
        params=tuple(params),
        body_prop=body_prop,
        body_required=bool(body and body[1]),
        definition=definition,
    )


def _prompt_tool(source: VersionSource) -> McpTool | None:
    schema = source.prompt_input_schema
    if not isinstance(schema, Mapping):
        return None
    try:
        resolved = _Resolver(schema).resolve(schema)
    except _SchemaTooLarge:
        resolved = {"type": "object"}
    if not isinstance(resolved, dict) or resolved.get("type") != "object":
        resolved = {"type": "object"}
    resolved.pop("$defs", None)  # inlined above; the copy would only double the listing
    resolved.pop("definitions", None)
    label = f"{source.api_name} {source.version}"
    if source.state == "deprecated":
        label = f"[deprecated] {label}"
    description = "\n\n".join(p for p in (f"{label}.", _text(source.prompt_description)) if p)
    return McpTool(
        name=tool_name(source.api_slug, source.version),
        api_id=source.api_id,
        version_id=source.version_id,
        kind="prompt",
        method="POST",
        path_template="",
        definition={
            "name": "",
            "description": description[:MAX_DESCRIPTION],
            "inputSchema": resolved,
            "annotations": {"title": source.api_name[:100], "readOnlyHint": True, "openWorldHint": True},
        },
    )


def _encoded_size(definition: dict[str, Any]) -> int:
    """The bytes of a tools/list entry once named; over any cap when it cannot be encoded
    (an integer past 64 bits: JSON allows it, orjson refuses it), so it is listed slim."""
    try:
        return len(orjson.dumps(definition)) + MAX_NAME
    except TypeError:  # orjson.JSONEncodeError
        return MAX_TOOL_BYTES + 1


def _bounded(tool: McpTool | None) -> McpTool | None:
    """``tool`` with its encoded entry at most MAX_TOOL_BYTES (the name, set later, is at
    most MAX_NAME): as it is, else with every property typed as any value, else None."""
    if tool is None:
        return None
    size = _encoded_size(tool.definition)
    if size > MAX_TOOL_BYTES:
        schema = tool.definition.get("inputSchema") or {}
        properties = schema.get("properties") if isinstance(schema, dict) else None
        slim: dict[str, Any] = {"type": "object"}
        if isinstance(properties, dict):
            slim["properties"] = {
                name: {"type": "object"} if name == tool.body_prop and tool.kind == "rest" else {}
                for name in properties
            }
            slim["additionalProperties"] = False
        if isinstance(schema, dict) and isinstance(schema.get("required"), list):
            slim["required"] = schema["required"]
        definition = {**tool.definition, "inputSchema": slim}
        size = _encoded_size(definition)
        if size > MAX_TOOL_BYTES:
            return None
        tool = replace(tool, definition=definition)
    return replace(tool, size=size)


def tools_of_version(source: VersionSource) -> list[McpTool]:
    """The tools of one version, in document order, names not yet made unique."""
    if source.kind == "prompt":
        tool = _bounded(_prompt_tool(source))
        return [tool] if tool else []
    if not isinstance(source.document, Mapping):
        return []
    tools = []
    budget = _Budget()
    for path, method, operation, shared in _operations(source.document):
        tool = _bounded(_rest_tool(source, path, method, operation, shared, budget))
        if tool is not None:
            tools.append(tool)
        if len(tools) >= MAX_TOOLS_PER_VERSION:
            break
    return tools


# A version's tools are rebuilt only when its document (or what the names come from)
# changed: the snapshot is rebuilt on every config change and every 30 s by every worker.
_memo: dict[tuple[Any, ...], list[McpTool]] = {}


def _memo_key(source: VersionSource) -> tuple[Any, ...]:
    try:
        document = orjson.dumps(source.document, option=orjson.OPT_SORT_KEYS)
        schema = orjson.dumps(source.prompt_input_schema, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON (cannot come from a JSONField): never memoized
        document = schema = repr(id(source)).encode()
    return (
        source.version_id,
        source.api_id,
        source.api_slug,
        source.api_name,
        source.version,
        source.state,
        source.kind,
        source.prompt_description,
        hashlib.sha256(document + b"\0" + schema).digest(),
    )


def build_catalog(
    sources: Iterable[VersionSource], grants: Iterable[tuple[int, int]], routes: dict[int, Route] | None = None
) -> McpCatalog:
    """Tools for ``sources`` (live versions), and for each application (``grants``: its
    approved (application, api) pairs) the tools of the APIs it is subscribed to."""
    global _memo
    memo: dict[tuple[Any, ...], list[McpTool]] = {}
    by_name: dict[str, McpTool] = {}
    by_api: dict[int, list[McpTool]] = {}
    # Oldest API first: a clash of names suffixes the newcomer, so a name an agent knows
    # never moves to an API published later (slugs allow '_', so another tenant's slug can
    # be a prefix of this one's and its operation complete the name).
    for source in sorted(sources, key=lambda s: (s.api_id, s.version_id)):
        key = _memo_key(source)
        tools = _memo.get(key)
        if tools is None:
            try:
                tools = tools_of_version(source)
            except Exception:
                # A team's document that trips a bug here costs that version its tools, never
                # every worker its whole snapshot (and with it key revocations and new routes).
                log.exception("MCP tools of API %s version %s not built", source.api_id, source.version_id)
                tools = []
        memo[key] = tools
        for tool in tools:
            name = _unique(tool.name, by_name, str(tool.version_id))
            final = McpTool(
                name=name,
                api_id=tool.api_id,
                version_id=tool.version_id,
                kind=tool.kind,
                method=tool.method,
                path_template=tool.path_template,
                params=tool.params,
                body_prop=tool.body_prop,
                body_required=tool.body_required,
                definition={**tool.definition, "name": name},
                size=tool.size,
            )
            by_name[name] = final
            by_api.setdefault(tool.api_id, []).append(final)
    _memo = memo  # only the current versions stay cached
    by_application: dict[int, list[McpTool]] = {}
    apis: dict[int, set[int]] = {}
    for application_id, api_id in sorted(grants):
        tools_of_api = by_api.get(api_id)
        if tools_of_api:
            by_application.setdefault(application_id, []).extend(tools_of_api)
            apis.setdefault(application_id, set()).add(api_id)
    return McpCatalog(
        by_name=by_name,
        by_application={a: tuple(t) for a, t in by_application.items()},
        apis_of_application={a: frozenset(ids) for a, ids in apis.items()},
        routes=routes or {},
    )


# -- a call's request -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolRequest:
    method: str
    path: bytes  # after the base path, percent-encoded; "" for the base path itself
    query: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes | None


def _scalar(value: Any, what: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    raise ToolInputError(f"{what} must be a string, number or boolean.")


def _path_segment(value: Any, name: str) -> str:
    text = _scalar(value, f"Path parameter '{name}'")
    if not text:
        raise ToolInputError(f"Path parameter '{name}' may not be empty.")
    # One segment, never a way out of the API's base path (the gateway refuses these in any
    # request path; here the model is told which argument to fix).
    if "/" in text or "\\" in text or "\x00" in text or text.split(";", 1)[0] in _DOT_SEGMENTS:
        raise ToolInputError(f"Path parameter '{name}' must be one path segment: no '/', '\\', NUL, '.' or '..'.")
    return quote(text, safe="-._~")


def request_for(tool: McpTool, arguments: Any) -> ToolRequest:
    """The HTTP request a call of ``tool`` with ``arguments`` makes, or ToolInputError."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ToolInputError("The arguments must be a JSON object.")
    if tool.kind == "prompt":
        return ToolRequest("POST", b"", b"", (), orjson.dumps(arguments))
    known = {p.prop for p in tool.params} | ({tool.body_prop} if tool.body_prop else set())
    unknown = sorted(str(k) for k in arguments if k not in known)
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise ToolInputError(f"Unknown arguments: {', '.join(unknown)[:500]}. Known: {listed}.")
    missing = [p.prop for p in tool.params if p.required and p.prop not in arguments]
    if tool.body_required and tool.body_prop not in arguments:
        missing.append(tool.body_prop)
    if missing:
        raise ToolInputError(f"Missing required arguments: {', '.join(missing)}.")
    values = {p.name: arguments[p.prop] for p in tool.params if p.location == "path" and p.prop in arguments}
    parts: list[str] = []
    last = 0
    for match in _TEMPLATE_VAR.finditer(tool.path_template):
        parts.append(quote(tool.path_template[last : match.start()], safe=_PATH_SAFE))
        parts.append(_path_segment(values.get(match.group(1)), match.group(1)))
        last = match.end()
    parts.append(quote(tool.path_template[last:], safe=_PATH_SAFE))
    query: list[str] = []
    headers: list[tuple[bytes, bytes]] = []
    for param in tool.params:
        if param.prop not in arguments or param.location == "path":
            continue
        value = arguments[param.prop]
        if param.location == "query":
            items = value if isinstance(value, list) else [value]
            for item in items:
                text = _scalar(item, f"Query parameter '{param.name}'")
                query.append(f"{quote(param.name, safe='')}={quote(text, safe='')}")
        else:
            text = _scalar(value, f"Header '{param.name}'")
            if any(c in text for c in "\r\n\x00") or len(text) > MAX_HEADER_VALUE:
                limit = MAX_HEADER_VALUE
                raise ToolInputError(f"Header '{param.name}' must be one line of at most {limit} characters.")
            try:
                headers.append((param.name.lower().encode(), text.encode("latin-1")))
            except UnicodeEncodeError:
                raise ToolInputError(f"Header '{param.name}' must be Latin-1 text.") from None
    body = None
    if tool.body_prop and tool.body_prop in arguments:
        body = orjson.dumps(arguments[tool.body_prop])
    return ToolRequest(tool.method, "".join(parts).encode(), "&".join(query).encode(), tuple(headers), body)
