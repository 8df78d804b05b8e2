"""llm.prompts: safe rendering, save-time checks of templates and schemas (nothing fetched,
bombs refused), input validation by JSON path, output checking and the repair request."""

from __future__ import annotations

import socket
import threading
import time

import jsonschema_rs
import pytest

from llm import prompts
from llm.prompts import FieldError, PromptSpec, check_schema, render, template_errors, validate_input

INPUT = {
    "type": "object",
    "required": ["text", "language"],
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "maxLength": 10},
        "language": {"enum": ["en", "fr"]},
        "n": {"type": "integer", "minimum": 1, "maximum": 5},
        "items": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object"},
    },
}
OUTPUT = {"type": "object", "required": ["label"], "properties": {"label": {"enum": ["positive", "negative"]}}}


def spec(**overrides) -> PromptSpec:
    fields = {"route_alias": "m", "user_template": "Say {{text}} in {{ language }}", "input_schema": INPUT}
    return PromptSpec.checked(**{**fields, **overrides})


def test_render_inserts_values_once_and_never_expands_placeholders_inside_them():
    s = spec(user_template="A={{text}} B={{language}} N={{n}} I={{items}} M={{meta}} X={{n}}")
    system, user = render(s, {"text": "{{language}} {{ n }}", "language": "fr", "items": ["a", 1], "meta": {"k": "}}"}})
    assert user == 'A={{language}} {{ n }} B=fr N= I=["a",1] M={"k":"}}"} X='
    assert system == ""


def test_template_errors_name_unknown_reserved_and_malformed_placeholders():
    assert template_errors("{{text}} {{language}}", INPUT) == []
    problems = template_errors("{{text}} {{other}} {{stream}} {{ text | upper }} {{a.b}}", INPUT)
    assert any("{{other}}" in p and "not a property" in p for p in problems)
    assert any("{{stream}}" in p and "reserved" in p for p in problems)
    assert sum("is not a placeholder" in p for p in problems) == 2
    assert prompts.template_variables("{{b}} {{ a }} {{b}}") == ["b", "a"]


def test_check_schema_accepts_a_plain_object_schema():
    assert check_schema(INPUT) == []
    assert (
        check_schema({"type": "object", "$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s"}}})
        == []
    )


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ([], "must be a JSON object"),
        ({"type": "string"}, '"type": "object"'),
        ({"type": 5}, "Not a valid JSON Schema"),
        ({"type": "object", "$schema": "http://json-schema.org/draft-04/schema#"}, "$schema must be"),
        ({"type": "object", "$id": "http://example.com/s"}, "$id is not allowed"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "cannot be compiled"),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(("}}}, "cannot be compiled"),
        (
            {
                "type": "object",
                "$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}]}},
                "properties": {"x": {"$ref": "#/$defs/a"}},
            },
            "recursive",
        ),
        ({"type": "object", "properties": {"p": {"description": "x" * 70_000}}}, "bytes; at most"),
        ({"type": "object", "properties": {"stream": {"type": "boolean"}}}, "'stream' is reserved"),
    ],
)
def test_check_schema_refuses(schema, expected):
    problems = check_schema(schema)
    assert problems and any(expected in p for p in problems), problems


def test_check_schema_refuses_a_reference_bomb_quickly():
    defs = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(30)}
    defs["d30"] = {"type": "string"}
    started = time.perf_counter()
    problems = check_schema({"type": "object", "$defs": defs, "properties": {"x": {"$ref": "#/$defs/d0"}}})
    assert any("expands to more than" in p for p in problems)
    assert time.perf_counter() - started < 1.0


def test_check_schema_refuses_deep_nesting():
    deep: dict = {"type": "string"}
    for _ in range(40):
        deep = {"type": "object", "properties": {"a": deep}}
    assert any("nests deeper" in p for p in check_schema(deep))


def test_a_reference_whose_index_is_a_superscript_digit_is_refused_not_an_error():
    # '²'.isdigit() is true and int('²') raises: saving this schema was a 500.
    schema = {"type": "object", "$defs": {"l": [{"type": "string"}]}, "properties": {"a": {"$ref": "#/$defs/l/²"}}}
    assert check_schema(schema)


def test_remote_references_are_never_fetched():
    """A listening socket stands for a remote schema host: nothing may connect to it, not
    at save time, not when a spec that bypassed the save-time check is served."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    schema = {"type": "object", "properties": {"a": {"$ref": f"http://127.0.0.1:{port}/schema.json"}}}
    connected: list[bool] = []

    def accept() -> None:
        try:
            server.accept()
            connected.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    assert any("not local" in p for p in check_schema(schema))
    served = PromptSpec.checked(route_alias="m", user_template="{{a}}", input_schema=schema)
    assert served.broken
    with pytest.raises(jsonschema_rs.ValidationError):  # compiling it directly refuses to retrieve
        prompts.validator_for(schema)
    thread.join()
    server.close()
    assert connected == []


def test_validate_input_lists_every_offending_field_by_path():
    errors = validate_input(spec(), {"text": "x" * 11, "n": 9, "items": ["a", 3], "zz": 1, "stream": "yes"})
    by_path = {e.path: e.message for e in errors}
    assert set(by_path) == {"$.stream", "$.language", "$.text", "$.n", "$.items[1]", "$.zz"}
    assert by_path["$.language"] == "This field is required."
    assert "longer than 10" in by_path["$.text"]
    assert "maximum of 5" in by_path["$.n"]
    # The client's values are never quoted back.
    assert all("xxxxxxxxxxx" not in e.message for e in errors)


def test_validate_input_enum_and_body_shape():
    assert [e.path for e in validate_input(spec(), {"text": "hi", "language": "de"})] == ["$.language"]
    assert validate_input(spec(), {"text": "hi", "language": "en", "stream": True}) == []
    assert validate_input(spec(), ["not", "an", "object"]) == [
        FieldError("$", "The request body must be a JSON object.")
    ]
    deep: dict = {}
    node = deep
    for _ in range(300):
        node["meta"] = {}
        node = node["meta"]
    errors = validate_input(spec(), {"text": "hi", "language": "en", "meta": deep})
    assert errors and errors[0].path == "$" and "nests deeper" in errors[0].message


def test_odd_keys_are_quoted_in_paths():
    assert prompts.json_path(["a b", 2, "c"]) == '$["a b"][2].c'


def test_check_output_and_the_repair_request():
    s = spec(output_mode="json", output_schema=OUTPUT)
    assert s.broken == ""
    assert prompts.check_output(s, '{"label": "positive"}') == ({"label": "positive"}, [])
    assert prompts.check_output(s, '```json\n{"label": "negative"}\n```')[0] == {"label": "negative"}
    value, errors = prompts.check_output(s, '{"label": "meh"}')
    assert value == {"label": "meh"} and [e.path for e in errors] == ["$.label"]
    value, not_json = prompts.check_output(s, "not json")
    assert value is None and "not valid JSON" in not_json[0].message
    request = prompts.chat_request(s, "sys", "user text")
    assert request["response_format"]["json_schema"]["schema"] == OUTPUT
    assert request["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "user text"}]
    repaired = prompts.repair_request(request, '{"label": "meh"}', errors)
    assert repaired["messages"][2] == {"role": "assistant", "content": '{"label": "meh"}'}
    assert "$.label" in repaired["messages"][3]["content"]
    assert request["messages"][-1]["content"] == "user text"  # the first request is untouched
    plain = prompts.chat_request(s, "sys", "u", structured=False)
    assert "response_format" not in plain and "JSON Schema" in plain["messages"][0]["content"]


def test_parameters_reach_the_request():
    request = prompts.chat_request(spec(temperature=0.2, max_tokens=50), "", "u")
    assert request["temperature"] == 0.2 and request["max_tokens"] == 50
    assert request["messages"] == [{"role": "user", "content": "u"}]


def test_the_compiled_validator_is_made_once_per_schema():
    s = spec()
    before = prompts._validator.cache_info()
    for n in range(50):
        validate_input(s, {"text": "hi", "language": "en", "n": n % 7})
    after = prompts._validator.cache_info()
    assert after.misses == before.misses and after.hits >= before.hits + 50
