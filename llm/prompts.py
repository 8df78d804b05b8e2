"""Prompt APIs on the data plane: what one version of a prompt API sends to its model, and
the checks around it. Pure (no Django): the gateway's request path, the playground
(``llm/prompt_playground.py``) and the control plane's save-time validation all use it.

- ``PromptSpec``: a version compiled for serving (system prompt, user template, schemas,
  output mode, model alias, parameters). Built by the gateway's snapshot loader and by
  ``spec_from_row`` for a Django ``PromptVersion``.
- ``render``: ``{{variable}}`` placeholders of the user template replaced in ONE pass by the
  request's values. A value is data: it is inserted as text (non-strings JSON-encoded) and
  never scanned again, so ``{{other}}`` inside a value stays those very characters. No
  Jinja, no expressions, no attribute access: a placeholder is a bare name.
- ``check_schema`` / ``template_errors``: save-time validation (promptcp calls these).
- ``validate_input`` / ``check_output``: JSON Schema validation with a compiled validator
  cached per schema; every offending field by JSON path (``$.text``, ``$.items[2]``).
- ``chat_request`` / ``repair_request``: the canonical chat request (``llm/canonical.py``)
  for a rendered prompt, and the one repair attempt after a non-conforming JSON answer.

Schemas come from API owners and bodies from anyone holding a key, so both are hostile:
validation never fetches anything (``offline=True``; ``check_schema`` refuses any ``$ref``
that is not local), sizes and depths are capped, regular expressions run in the Rust
engine without backtracking (``jsonschema_rs.RegexOptions``), error lists and messages are capped,
and messages never echo the client's values (``mask``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jsonschema_rs
import orjson

from llm.jsonpointer import resolve_local

Json = dict[str, Any]
log = logging.getLogger(__name__)

OUTPUT_TEXT = "text"
OUTPUT_JSON = "json"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

MAX_SCHEMA_BYTES = 64 * 1024  # an input or output schema, as compact JSON
MAX_SCHEMA_DEPTH = 32  # nesting of objects/arrays inside a schema document
MAX_SCHEMA_EXPANSION = 5_000  # schema nodes once every $ref is inlined (a "billion laughs" guard)
# Nesting of objects/arrays in a request body or an answer: what orjson encodes (254 levels;
# ``too_deep``). Values are encoded into the prompt, so deeper ones could not be rendered.
MAX_INPUT_DEPTH = 254
# A prompt's input is text for a model: 1 MiB is about 250k tokens. It also bounds what an
# invalid body costs to report: the validator converts the offending instance into Python
# to build each error, element by element.
MAX_BODY_BYTES = 1024 * 1024
# The rendered user message: a template may name one variable many times (50k characters
# hold 6,000 '{{text}}'), and each copy of a 1 MiB value is a 1 MiB string, so without a cap
# one request could make the worker build gigabytes. Far past any model's context window.
MAX_RENDERED_CHARS = 4 * 1024 * 1024
MAX_FIELD_ERRORS = 50  # a 422 lists at most this many fields
MAX_MESSAGE_CHARS = 300
MAX_PATH_CHARS = 200
REPAIR_ERRORS = 10  # validation errors quoted back to the model in the repair attempt
RESERVED_KEYS = frozenset({"stream"})  # request-body keys that steer the call, never input variables

# A placeholder is a bare name, whitespace allowed inside the braces: {{ text }}.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keywords that change the base URI or resolve dynamically: with them a "local" $ref could
# name another resource, so they are refused outright.
_FORBIDDEN_KEYWORDS = ("$id", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One offending value: ``path`` is a JSON path from the body's root (``$`` itself for
    the whole body), ``message`` says what is wrong without repeating the value."""

    path: str
    message: str

    def to_json(self) -> Json:
        return {"path": self.path, "message": self.message}


@dataclass(frozen=True, slots=True, eq=False)
class PromptSpec:
    """One version of a prompt API as served. Schemas are plain JSON-ready dicts; their
    compiled validators are cached by content (``_validator``), so specs rebuilt by every
    snapshot reload share them. Compared and hashed by identity (``eq=False``): the dicts
    inside are not hashable, and a ``Route`` holding a spec must stay hashable."""

    route_alias: str  # the model route (llm.ModelRoute alias) the prompt runs on
    user_template: str
    input_schema: Json
    system_prompt: str = ""
    output_mode: str = OUTPUT_TEXT  # text | json
    output_schema: Json = field(default_factory=dict)
    temperature: float | None = None
    max_tokens: int | None = None
    version_id: int | None = None
    # Why this spec cannot be served (a schema that fails ``check_schema``: the row bypassed
    # the services); the gateway answers 503 instead of validating against it.
    broken: str = ""
    # The schemas as canonical JSON: the keys of the compiled-validator cache, computed once
    # per spec (by ``checked``) instead of per request.
    input_key: bytes = field(default=b"", compare=False, repr=False)
    output_key: bytes = field(default=b"", compare=False, repr=False)

    @property
    def json_output(self) -> bool:
        return self.output_mode == OUTPUT_JSON

    @classmethod
    def checked(cls, **fields: Any) -> PromptSpec:
        """A spec with ``broken`` set when a schema or the template would not pass save-time
        validation (the snapshot loader builds every spec through this)."""
        spec = cls(**fields)
        problems = check_schema(spec.input_schema) + template_errors(spec.user_template, spec.input_schema)
        if spec.json_output:
            problems += [f"output schema: {p}" for p in check_schema(spec.output_schema, require_object=False)]
        if problems:
            return cls(**{**fields, "broken": "; ".join(problems)[:MAX_MESSAGE_CHARS]})
        return cls(**fields, input_key=_schema_key(spec.input_schema), output_key=_schema_key(spec.output_schema))


def spec_from_row(row: Any, route_alias: str, *, version_id: int | None = None) -> PromptSpec:
    """A checked spec from a ``llm.models.PromptVersion`` (duck-typed: no Django import)."""
    return PromptSpec.checked(
        route_alias=route_alias,
        user_template=row.user_template,
        input_schema=row.input_schema if isinstance(row.input_schema, dict) else {},
        system_prompt=row.system_prompt or "",
        output_mode=str(row.output_mode),
        output_schema=row.output_schema if isinstance(row.output_schema, dict) else {},
        temperature=row.temperature,
        max_tokens=row.max_tokens,
        version_id=version_id,
    )


# -- save-time checks ----------------------------------------------------------------------------


def _walk(node: Any, depth: int = 0) -> Iterator[tuple[Any, int]]:
    yield node, depth
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, depth + 1)


def nesting_depth(value: Any, limit: int) -> int:
    """Depth of nested objects/arrays, counted iteratively and stopping past ``limit`` (a
    hostile body must not cost recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def too_deep(value: Any) -> bool:
    """Whether ``value`` nests deeper than MAX_INPUT_DEPTH: orjson's encoder refuses it. One
    pass in C, where a Python walk would visit every element of the body on the event loop."""
    try:
        orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: "Recursion limit reached" (parsed JSON has nothing else to refuse)
        return True
    return False


def check_schema(schema: Any, *, require_object: bool = True) -> list[str]:
    """Problems that make ``schema`` unfit for a prompt version ([] when it is fit): not a
    JSON object, over the size or depth cap, not valid against the draft 2020-12
    meta-schema, a ``$ref`` that is not local (``#...``: nothing is ever fetched), keywords
    that move the base URI, another ``$schema`` than 2020-12, and (``require_object``, the
    input schema) a top level that is not ``"type": "object"``."""
    if not isinstance(schema, dict):
        return ["The schema must be a JSON object."]
    try:
        size = len(orjson.dumps(schema))
    except (TypeError, orjson.JSONEncodeError):
        return ["The schema is not JSON."]
    if size > MAX_SCHEMA_BYTES:
        return [f"The schema is {size} bytes; at most {MAX_SCHEMA_BYTES} are allowed."]
    if nesting_depth(schema, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
        return [f"The schema nests deeper than {MAX_SCHEMA_DEPTH} levels."]
    problems: list[str] = []
    declared = schema.get("$schema")
    if declared is not None and (not isinstance(declared, str) or declared.rstrip("#") != DRAFT_2020_12):
        problems.append(f"$schema must be {DRAFT_2020_12} (or left out).")
    for node, _depth in _walk(schema):
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            problems.append(f"$ref {ref[:80]!r} is not local: only references inside the schema ('#/...') are allowed.")
        for keyword in _FORBIDDEN_KEYWORDS:
            if keyword in node and isinstance(node[keyword], str):
                problems.append(f"{keyword} is not allowed in a prompt schema.")
    if problems:
        return sorted(set(problems))
    expansion = _expansion_problem(schema)
    if expansion:
        return [expansion]
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as error:
        where = "/".join(str(p) for p in error.instance_path)
        return [f"Not a valid JSON Schema (draft 2020-12) at '/{where}': {_short(error.message)}"]
    except Exception as error:  # the meta-validator's own failure must not become a 500
        return [f"Not a valid JSON Schema: {_short(str(error))}"]
    if require_object and schema.get("type") != "object":
        problems.append('The input schema must have "type": "object" at the top level.')
    properties = schema.get("properties")
    if require_object and isinstance(properties, dict):
        problems += [
            f"The property '{name}' is reserved (the request's '{name}' flag) and cannot be an input."
            for name in sorted(RESERVED_KEYS.intersection(properties))
        ]
    try:
        _validator(_schema_key(schema))
    except Exception as error:  # e.g. a $ref to a missing local definition, a bad regex
        hint = " (patterns may not use lookaround or backreferences)" if "regex" in str(error) else ""
        problems.append(f"The schema cannot be compiled{hint}: {_short(str(error))}")
    return problems


class _Cyclic(Exception):
    pass


def _expansion_problem(schema: Json) -> str:
    """Refuse recursive references and schemas whose references multiply into more than
    MAX_SCHEMA_EXPANSION nodes: validation time grows with the expanded size, so 25 levels
    of ``allOf: [$ref, $ref]`` (2^25 checks per request) would be a denial of service."""
    sizes: dict[int, int] = {}
    open_refs: set[int] = set()

    def size(node: Any) -> int:
        total = 1
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target = resolve_local(schema, ref)
                if target is not None:
                    key = id(target)
                    if key in open_refs:
                        raise _Cyclic(ref)
                    if key not in sizes:
                        open_refs.add(key)
                        sizes[key] = size(target)
                        open_refs.discard(key)
                    total += sizes[key]
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            return 1
        for child in children:
            total += size(child)
            if total > MAX_SCHEMA_EXPANSION:
                return total
        return total

    try:
        expanded = size(schema)
    except _Cyclic as cycle:
        return f"$ref {str(cycle)[:80]!r} is recursive; recursive schemas are not allowed."
    except RecursionError:
        return "The schema's $refs chain too deeply."
    if expanded > MAX_SCHEMA_EXPANSION:
        return f"The schema expands to more than {MAX_SCHEMA_EXPANSION} nodes once its $refs are followed."
    return ""


def template_variables(template: str) -> list[str]:
    """The placeholder names of a template, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in PLACEHOLDER.finditer(template):
        seen.setdefault(match.group(1), None)
    return list(seen)


def _braced(template: str) -> Iterator[str]:
    """What stands between each ``{{`` and the next ``}}`` (anything that looks like a
    placeholder attempt, to report malformed ones). With ``str.find``: the regular
    expression ``\\{\\{(.*?)\\}\\}`` rescanned to the end from every ``{{`` without a
    closing ``}}``, quadratic in a template of braces, and specs are checked on every
    snapshot build of every worker."""
    start = 0
    while (opened := template.find("{{", start)) >= 0:
        closed = template.find("}}", opened + 2)
        if closed < 0:
            return
        yield template[opened + 2 : closed]
        start = closed + 2


def template_errors(template: str, input_schema: Any) -> list[str]:
    """Save-time problems of a user template against its input schema: malformed
    placeholders (``{{ a.b }}``, ``{{ x | upper }}``: no expressions exist) and names that are
    not top-level properties of the schema (or are reserved, such as ``stream``)."""
    problems: list[str] = []
    for inner in _braced(template):
        inner = inner.strip()
        if not _IDENTIFIER.fullmatch(inner):
            problems.append(f"{{{{{_short(inner, 40)}}}}} is not a placeholder: use {{{{name}}}} with a property name.")
    properties = input_schema.get("properties") if isinstance(input_schema, dict) else None
    names = set(properties) if isinstance(properties, dict) else set()
    for name in template_variables(template):
        if name in RESERVED_KEYS:
            problems.append(f"{{{{{name}}}}} is reserved (the request's '{name}' flag) and cannot be a variable.")
        elif name not in names:
            problems.append(f"{{{{{name}}}}} is not a property of the input schema.")
    return problems


# -- rendering -----------------------------------------------------------------------------------


def value_text(value: Any) -> str:
    """How a value is written into the prompt: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


class RenderTooLarge(ValueError):
    """The rendered user message would exceed MAX_RENDERED_CHARS."""


def render(spec: PromptSpec, inputs: Json) -> tuple[str, str]:
    """(system prompt, user message). One pass over the template: values are inserted and
    never scanned again; a placeholder whose property is absent (optional) becomes ''.
    RenderTooLarge, before anything is built, when the message would exceed
    MAX_RENDERED_CHARS."""
    texts: dict[str, str] = {}
    size = len(spec.user_template)
    for match in PLACEHOLDER.finditer(spec.user_template):
        name = match.group(1)
        if name not in texts:
            texts[name] = value_text(inputs[name]) if name in inputs else ""
        size += len(texts[name])
        if size > MAX_RENDERED_CHARS:
            raise RenderTooLarge(f"The prompt would be longer than {MAX_RENDERED_CHARS} characters.")
    return spec.system_prompt, PLACEHOLDER.sub(lambda match: texts[match.group(1)], spec.user_template)


# -- validation ----------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _validator(schema_json: bytes) -> Any:
    """A compiled validator per schema content. ``offline``: no reference is ever fetched;
    ``mask``: messages say "value" instead of quoting the client's data; ``RegexOptions``:
    ``pattern`` and ``patternProperties`` run in the linear-time engine. The default
    (fancy-regex) backtracks for backreferences and lookaround: ``^(a+)+\\1$`` against a
    string of 'a's grows faster than its length, and validation runs on the event loop. A
    schema needing those features does not compile, so ``check_schema`` refuses it and a
    stored one is served as broken (503)."""
    return jsonschema_rs.Draft202012Validator(
        orjson.loads(schema_json), mask="value", offline=True, pattern_options=jsonschema_rs.RegexOptions()
    )


def _schema_key(schema: Json) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)


def validator_for(schema: Json, key: bytes = b"") -> Any:
    """The compiled validator of ``schema`` (``key``: its ``_schema_key``, when known)."""
    return _validator(key or _schema_key(schema))


def json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(str(part)):
            path += f".{part}"
        else:
            path += "[" + orjson.dumps(str(part)).decode() + "]"
        if len(path) > MAX_PATH_CHARS:
            return path[:MAX_PATH_CHARS] + "..."
    return path


def _short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def schema_errors(schema: Json, value: Any, key: bytes = b"") -> list[FieldError]:
    """Every way ``value`` fails ``schema`` (at most MAX_FIELD_ERRORS), by JSON path. A
    missing required property is reported at its own path (``$.text``), not its parent's."""
    try:
        return _schema_errors(validator_for(schema, key), value)
    except Exception:  # the validator's own failure must be a clear refusal, never a 500
        log.exception("a schema could not be applied")
        return [FieldError("$", "The value could not be validated against the schema.")]


def _schema_errors(validator: Any, value: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    if validator.is_valid(value):  # the common case: no error objects built
        return errors
    for error in validator.iter_errors(value):
        parts = list(error.instance_path)
        kind = error.kind
        if kind.name == "required":
            errors.append(FieldError(json_path([*parts, kind.property]), "This field is required."))
        elif kind.name == "falseSchema" and parts:
            errors.append(FieldError(json_path(parts), "This field is not allowed."))
        elif kind.name == "additionalProperties":
            for name in list(kind.unexpected)[:MAX_FIELD_ERRORS]:
                errors.append(FieldError(json_path([*parts, name]), "This field is not allowed."))
        else:
            errors.append(FieldError(json_path(parts), _short(error.message)))
        if len(errors) >= MAX_FIELD_ERRORS:
            break
    return errors[:MAX_FIELD_ERRORS]


def input_of(body: Json) -> Json:
    """The input variables of a request body: the body without its reserved keys."""
    if not RESERVED_KEYS.intersection(body):
        return body
    return {k: v for k, v in body.items() if k not in RESERVED_KEYS}


def validate_input(spec: PromptSpec, body: Any) -> list[FieldError]:
    """[] when ``body`` (the parsed request body) may be rendered; else every offending field.
    The reserved ``stream`` key is checked here (a boolean) and left out of the schema's view."""
    if not isinstance(body, dict):
        return [FieldError("$", "The request body must be a JSON object.")]
    if too_deep(body):
        return [FieldError("$", f"The request body nests deeper than {MAX_INPUT_DEPTH} levels.")]
    errors = []
    if "stream" in body and not isinstance(body["stream"], bool):
        errors.append(FieldError("$.stream", "stream must be true or false."))
    return errors + schema_errors(spec.input_schema, input_of(body), spec.input_key)


# -- the model's answer --------------------------------------------------------------------------

_FENCE_INFO = re.compile(r"[A-Za-z0-9_-]*")


def unfenced(text: str) -> str:
    """The inside of a Markdown code fence around the whole text (```json ... ```), else the
    text. String operations, not a regular expression: the answer is the model's, which a
    caller can steer, and a lazy body before an optional ``\\s*``-bound closing fence
    backtracks quadratically over a long run of spaces."""
    stripped = text.strip()
    if not stripped.startswith("```") or not stripped.endswith("```"):
        return text
    newline = stripped.find("\n")
    if newline < 0 or newline + 1 > len(stripped) - 3 or not _FENCE_INFO.fullmatch(stripped[3:newline].strip()):
        return text
    return stripped[newline + 1 : -3]


def parse_output(text: str) -> tuple[Any, list[FieldError]]:
    """The answer as JSON; a Markdown code fence around it is tolerated (models add them
    when no structured-output mode held them to plain JSON)."""
    text = unfenced(text)
    try:
        return orjson.loads(text), []
    except orjson.JSONDecodeError as error:
        return None, [FieldError("$", f"The answer is not valid JSON: {_short(str(error), 120)}")]


def check_output(spec: PromptSpec, text: str) -> tuple[Any, list[FieldError]]:
    """(parsed answer, problems) for a JSON-mode answer; problems [] when it conforms."""
    value, errors = parse_output(text)
    if errors:
        return None, errors
    if too_deep(value):
        return None, [FieldError("$", "The answer nests too deeply.")]
    return value, schema_errors(spec.output_schema, value, spec.output_key)


# -- the canonical request -----------------------------------------------------------------------


def chat_request(spec: PromptSpec, system: str, user: str, *, structured: bool = True) -> Json:
    """The canonical chat request for a rendered prompt (``model`` is the route alias; the
    router resolves it). JSON mode asks for structured output (``response_format``
    json_schema, which every adapter translates) when ``structured``; otherwise the schema
    goes into the system prompt and the answer is only validated."""
    messages: list[Json] = []
    if spec.json_output and not structured:
        schema_text = orjson.dumps(spec.output_schema).decode()
        instruction = f"Answer with JSON only, no prose, matching this JSON Schema:\n{schema_text}"
        system = f"{system}\n\n{instruction}" if system else instruction
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user})
    request: Json = {"model": spec.route_alias, "messages": messages}
    if spec.temperature is not None:
        request["temperature"] = spec.temperature
    if spec.max_tokens is not None:
        request["max_tokens"] = spec.max_tokens
    if spec.json_output and structured:
        request["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": spec.output_schema},
        }
    return request


def structured_output(route: Any) -> bool:
    """Whether every model a route may answer with (``llm.canonical.AiRoute``: targets and
    fallbacks) declares the ``json`` capability, i.e. takes ``response_format`` json_schema.
    Otherwise the schema is put in the system prompt and the answer only validated."""
    models = [target for _weight, target in route.targets] + list(route.fallbacks)
    return bool(models) and all("json" in target.capabilities for target in models)


def repair_request(request: Json, answer: str, errors: list[FieldError]) -> Json:
    """The one repair attempt: the same request, the bad answer as the assistant's turn, and
    the validation problems with a request for corrected JSON."""
    listed = "\n".join(f"- {e.path}: {e.message}" for e in errors[:REPAIR_ERRORS])
    correction = (
        "Your answer does not satisfy the required JSON Schema:\n"
        f"{listed}\n"
        "Reply with the corrected JSON only, nothing else."
    )
    return {
        **request,
        "messages": [
            *request["messages"],
            {"role": "assistant", "content": answer},
            {"role": "user", "content": correction},
        ],
    }


def answer_text(completion: Json) -> str:
    """The text of a canonical chat.completion's first choice."""
    choices = completion.get("choices") or ()
    if not choices:
        return ""
    content = (choices[0].get("message") or {}).get("content")
    return content if isinstance(content, str) else ""
