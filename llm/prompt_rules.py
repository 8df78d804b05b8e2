"""Save-time checks of a prompt version: its schemas and its template's placeholders.

The rules are the data plane's (``llm.prompts``, owned by the gateway side): what the
gateway will refuse to run must be refused when the author saves it. Until that module is
on this branch, a minimal local version with the same names and the same contract stands
in (draft 2020-12 meta-validation, local ``$ref`` only, size and depth caps, an object at
the top), so the services are written once against ``check_schema``/``template_variables``.
"""

from __future__ import annotations

import json
import re
from typing import Any

try:  # the data plane's own rules, when merged
    from llm.prompts import check_schema as check_schema  # type: ignore[attr-defined,unused-ignore]
    from llm.prompts import template_errors as template_errors  # type: ignore[attr-defined,unused-ignore]
    from llm.prompts import template_variables as template_variables  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # pragma: no cover - replaced when promptgw is merged
    import jsonschema

    MAX_SCHEMA_BYTES = 64 * 1024
    MAX_SCHEMA_DEPTH = 32
    _PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

    def _depth(value: Any) -> int:
        deepest, pending = 0, [(value, 1)]
        while pending:
            item, level = pending.pop()
            deepest = max(deepest, level)
            if level > MAX_SCHEMA_DEPTH:
                return level
            if isinstance(item, dict):
                pending.extend((v, level + 1) for v in item.values())
            elif isinstance(item, list):
                pending.extend((v, level + 1) for v in item)
        return deepest

    def _refs(value: Any) -> list[str]:
        found, pending = [], [value]
        while pending:
            item = pending.pop()
            if isinstance(item, dict):
                for key, sub in item.items():
                    if key in ("$ref", "$dynamicRef") and isinstance(sub, str):
                        found.append(sub)
                    pending.append(sub)
            elif isinstance(item, list):
                pending.extend(item)
        return found

    def check_schema(schema: Any, *, require_object: bool = True) -> list[str]:
        """What is wrong with ``schema`` as an input/output schema (empty when fine)."""
        if not isinstance(schema, dict):
            return ["The schema must be a JSON object."]
        if _depth(schema) > MAX_SCHEMA_DEPTH:
            return [f"The schema nests deeper than {MAX_SCHEMA_DEPTH} levels."]
        if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
            return [f"The schema is larger than {MAX_SCHEMA_BYTES // 1024} KiB."]
        if "$id" in json.dumps(schema):
            return ["$id is not accepted: references stay inside the schema."]
        remote = [ref for ref in _refs(schema) if not ref.startswith("#")]
        if remote:
            return [f"Only local references (#/...) are allowed; {remote[0]!r} is not."]
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            path = "/".join(str(p) for p in error.absolute_path)
            return [f"{error.message}" + (f" (at {path})" if path else "")]
        if require_object and schema.get("type") != "object":
            return ['The top level must be {"type": "object", ...}.']
        return []

    def template_variables(template: str) -> list[str]:
        """The names of the ``{{variable}}`` placeholders of ``template``, in order, once each."""
        return list(dict.fromkeys(_PLACEHOLDER.findall(template)))

    _BRACES = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)

    def template_errors(template: str, input_schema: Any) -> list[str]:
        """Malformed placeholders, and names that are not top-level input properties."""
        problems = [
            f"{{{{{m.group(1).strip()[:40]}}}}} is not a placeholder: use {{{{name}}}} with a property name."
            for m in _BRACES.finditer(template)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", m.group(1).strip())
        ]
        properties = input_schema.get("properties") if isinstance(input_schema, dict) else None
        names = set(properties) if isinstance(properties, dict) else set()
        for name in template_variables(template):
            if name == "stream":
                problems.append("{{stream}} is reserved (the request's 'stream' flag) and cannot be a variable.")
            elif name not in names:
                problems.append(f"{{{{{name}}}}} is not a property of the input schema.")
        return problems
