"""llm.prompt_openapi on its own: examples that satisfy their schemas, and documents that
openapi-spec-validator accepts whatever (valid) schemas the author wrote."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest
from openapi_spec_validator import validate

from llm.prompt_openapi import build_document, example_of
from llm.prompts import check_schema

SCHEMAS = [
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 12, "maxLength": 20},
            "short": {"type": "string", "maxLength": 3},
            "email": {"type": "string", "format": "email"},
            "count": {"type": "integer", "minimum": 5, "maximum": 9},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "negative": {"type": "integer", "maximum": -3},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 2, "maxItems": 3},
            "maybe": {"type": ["null", "string"], "minLength": 2},
            "nested": {"type": "object", "properties": {"level": {"const": 3}}, "required": ["level"]},
            "either": {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "string"}]},
            "both": {"allOf": [{"type": "string"}, {"minLength": 9}]},
        },
        "required": ["name", "count"],
    },
    {
        "type": "object",
        "$defs": {"lang": {"type": "string", "enum": ["fr", "de"]}},
        "properties": {"text": {"type": "string", "default": "hi"}, "to": {"$ref": "#/$defs/lang"}},
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_the_generated_example_satisfies_its_schema(schema):
    assert check_schema(schema) == []
    example = example_of(schema)
    jsonschema.Draft202012Validator(schema).validate(example)


def test_examples_prefer_what_the_author_wrote():
    assert example_of({"type": "string", "examples": ["x"], "default": "y"}) == "x"
    assert example_of({"type": "string", "default": "y", "enum": ["z"]}) == "y"
    assert example_of({"enum": ["z", "w"]}) == "z"


def test_a_deep_schema_stops_generating_instead_of_recursing():
    deep: dict = {"type": "string"}
    for _ in range(50):
        deep = {"type": "object", "properties": {"a": deep}}
    example_of(deep)  # no RecursionError
    cyclic = {"type": "object", "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}}
    cyclic["properties"] = {"head": {"$ref": "#/$defs/n"}}
    example_of(cyclic)


@pytest.mark.parametrize(
    "schema",
    [
        # Small schemas that asked for a huge example: built on every prompt page view and at
        # publishing, they held a portal worker for seconds and gigabytes (a 3e9 minLength: a
        # MemoryError), whatever the schema size cap.
        {"type": "object", "properties": {"text": {"type": "string", "minLength": 50_000_000}}},
        {
            "type": "object",
            "properties": {"grid": json.loads('{"type": "array", "minItems": 10, "items": ' * 6 + "{}" + "}" * 6)},
        },
    ],
)
def test_an_example_stays_small_whatever_the_schema_asks(schema):
    assert check_schema(schema) == []  # both are saved as they are
    started = time.perf_counter()
    example = example_of(schema)
    assert len(json.dumps(example)) < 100_000
    assert time.perf_counter() - started < 1.0
    document = build_document(
        title="Big",
        version="v1",
        description="",
        base_path="/big/v1",
        input_schema=schema,
        output_mode="text",
        output_schema=None,
        server_url="http://gw.example/",
    )
    assert len(json.dumps(document)) < 200_000


@pytest.mark.parametrize("output_mode", ["text", "json"])
@pytest.mark.parametrize("schema", SCHEMAS)
def test_documents_validate_and_local_refs_point_inside_the_components(schema, output_mode):
    document = build_document(
        title="Tone / Check!",
        version="v1",
        description="",
        base_path="/tone/v1",
        input_schema=schema,
        output_mode=output_mode,
        output_schema=schema if output_mode == "json" else None,
        server_url="http://gw.example/",
    )
    validate(document)
    assert document["servers"] == [{"url": "http://gw.example"}]
    component = document["components"]["schemas"]["Tone_CheckInput"]
    if "$defs" in schema:
        assert component["properties"]["to"] == {"$ref": "#/components/schemas/Tone_CheckInput/$defs/lang"}


def test_an_example_the_schema_refuses_is_left_out():
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}}}
    document = build_document(
        title="Codes",
        version="v1",
        description="",
        base_path="/codes/v1",
        input_schema=schema,
        output_mode="text",
        output_schema=None,
        server_url="http://gw",
    )
    validate(document)
    assert "example" not in document["paths"]["/codes/v1"]["post"]["requestBody"]["content"]["application/json"]
