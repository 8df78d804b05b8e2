"""gateway/mcptools.py: OpenAPI operations (3.x and Swagger 2.0) and prompt input schemas as MCP
tools, compiled without trusting the document, and the requests tool arguments make,
without trusting the arguments."""

from __future__ import annotations

import re
import socket
import time

import orjson
import pytest

from gateway.mcptools import (
    MAX_NAME,
    MAX_TOOLS_PER_VERSION,
    ToolInputError,
    VersionSource,
    build_catalog,
    request_for,
    tool_name,
)

NAME_RULE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def source(document, *, api_id=1, slug="shop", version="v1", version_id=10, state="published", **extra):
    return VersionSource(api_id, slug, "Shop", version_id, version, state, document, **extra)


def one_tool(document, **extra):
    tools = build_catalog([source(document, **extra)], [(7, 1)]).tools_for(7)
    assert len(tools) == 1
    return tools[0]


def test_names_follow_the_strictest_model_rules_and_stay_unique():
    doc = {
        "paths": {
            "/a/{id}": {"get": {"operationId": "get item!"}, "post": {}},
            "/b": {"get": {"operationId": "get item?"}},  # sanitizes to the same name as the first
            "/c": {"get": {"operationId": "x" * 200}},
            "/d": {"get": {"operationId": "x" * 199 + "y"}},
        }
    }
    names = [t.name for t in build_catalog([source(doc, version="1.0")], [(7, 1)]).tools_for(7)]
    assert names[:2] == ["shop_1_0_get_item", "shop_1_0_post_a_id"]
    assert names[2].startswith("shop_1_0_get_item_") and len(set(names)) == len(names) == 5
    assert all(NAME_RULE.match(name) for name in names)
    assert names[3] != names[4] and len(names[3]) == len(names[4]) == MAX_NAME
    assert tool_name("///") == "tool"


def test_only_subscribed_applications_see_or_find_a_version_s_tools():
    mine = source({"paths": {"/x": {"get": {"operationId": "x"}}}})
    theirs = source({"paths": {"/y": {"get": {"operationId": "y"}}}}, api_id=2, slug="other", version_id=20)
    catalog = build_catalog([mine, theirs], [(7, 1), (8, 2)])
    assert [t.name for t in catalog.tools_for(7)] == ["shop_v1_x"]
    assert [t.name for t in catalog.tools_for(8)] == ["other_v1_y"]
    assert catalog.tool_for(7, "other_v1_y") is None and catalog.tool_for(7, "shop_v1_x") is not None
    assert catalog.tools_for(9) == () and catalog.tool_for(9, "shop_v1_x") is None


def test_parameters_body_and_refs_become_one_input_schema(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the catalogue must never open a connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    doc = {
        "paths": {
            "/items/{id}": {
                "parameters": [{"$ref": "#/components/parameters/Id"}],
                "put": {
                    "parameters": [
                        {"name": "id", "in": "query", "schema": {"type": "integer"}},  # same name, other place
                        {"name": "Authorization", "in": "header", "schema": {"type": "string"}},
                        {"name": "X-Portico-Tenant-Id", "in": "header"},
                        {"name": "bad header", "in": "header"},
                        {"name": "session", "in": "cookie"},
                        {"name": "X-Mode", "in": "header", "required": True, "schema": {"type": "string"}},
                    ],
                    "requestBody": {"$ref": "#/components/requestBodies/Item"},
                },
            }
        },
        "components": {
            "parameters": {"Id": {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}},
            "requestBodies": {
                "Item": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
                }
            },
            "schemas": {
                "Item": {
                    "type": "object",
                    "properties": {
                        "file": {"$ref": "file:///etc/passwd"},
                        "remote": {"$ref": "https://127.0.0.1:9/schema.json#/x"},
                        "missing": {"$ref": "#/components/schemas/Nope"},
                    },
                }
            },
        },
    }
    tool = one_tool(doc)
    schema = tool.definition["inputSchema"]
    assert set(schema["properties"]) == {"id", "query_id", "X-Mode", "body"}
    assert schema["required"] == ["id", "X-Mode", "body"] and schema["additionalProperties"] is False
    body = schema["properties"]["body"]["properties"]
    assert body["file"] == body["remote"] == {"description": "(external schema not included)"}
    assert body["missing"] == {}
    request = request_for(tool, {"id": "a", "query_id": 3, "X-Mode": "fast", "body": {"k": [1]}})
    assert request.method == "PUT" and request.path == b"/items/a" and request.query == b"id=3"
    assert request.headers == ((b"x-mode", b"fast"),) and request.body == b'{"k":[1]}'


def test_swagger_2_parameters_and_body():
    doc = {
        "swagger": "2.0",
        "paths": {
            "/pets": {
                "post": {
                    "parameters": [
                        {"name": "tags", "in": "query", "type": "array", "items": {"type": "string"}},
                        {"name": "pet", "in": "body", "required": True, "schema": {"$ref": "#/definitions/Pet"}},
                        {"name": "upload", "in": "formData", "type": "file"},
                    ]
                }
            }
        },
        "definitions": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}},
    }
    tool = one_tool(doc)
    properties = tool.definition["inputSchema"]["properties"]
    assert properties["tags"] == {"type": "array", "items": {"type": "string"}}
    assert properties["body"]["properties"] == {"name": {"type": "string"}}
    assert request_for(tool, {"tags": ["a b", "c&d"], "body": {"name": "x"}}).query == b"tags=a%20b&tags=c%26d"


def test_a_reference_bomb_is_cut_within_a_budget():
    # Each schema refers to the next twice: fully expanded, 2**40 nodes.
    schemas = {
        f"S{i}": {"type": "object", "properties": {"l": {"$ref": f"#/d/S{i + 1}"}, "r": {"$ref": f"#/d/S{i + 1}"}}}
        for i in range(40)
    }
    doc = {
        "d": schemas,
        "paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/d/S0"}}}}}}},
    }
    started = time.perf_counter()
    tool = one_tool(doc)
    assert time.perf_counter() - started < 1.0
    assert len(orjson.dumps(tool.definition)) < 200_000
    assert tool.definition["inputSchema"]["properties"]["body"]["type"] == "object"


def test_a_version_has_at_most_so_many_tools_and_hostile_documents_make_none():
    many = {"paths": {f"/p{i}": {"get": {}} for i in range(MAX_TOOLS_PER_VERSION + 50)}}
    assert len(build_catalog([source(many)], [(7, 1)]).tools_for(7)) == MAX_TOOLS_PER_VERSION
    for hostile in (None, [], "x", {"paths": []}, {"paths": {"no-slash": {"get": {}}, "/x": {"get": "no"}}}):
        assert build_catalog([source(hostile)], [(7, 1)]).tools_for(7) == ()


def test_a_reference_whose_index_is_a_superscript_digit_names_nothing_and_breaks_no_catalog():
    # '²'.isdigit() is true and int('²') raises: a document with such a $ref once made the
    # catalog build, and with it every worker's whole snapshot, fail.
    doc = {
        "d": [{"type": "string"}],
        "paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/d/²"}}}}}}},
    }
    other = source({"paths": {"/y": {"get": {"operationId": "y"}}}}, api_id=2, slug="other", version_id=20)
    catalog = build_catalog([source(doc), other], [(7, 1), (7, 2)])
    names = [tool.name for tool in catalog.tools_for(7)]
    assert len(names) == 2 and "other_v1_y" in names
    assert "type" not in one_tool(doc).definition["inputSchema"]["properties"]["body"]  # names nothing: any value


def test_prompt_versions_are_one_tool_taking_their_input():
    schema = {
        "type": "object",
        "$defs": {"Lang": {"type": "string", "enum": ["en", "fr"]}},
        "properties": {"text": {"type": "string", "maxLength": 100}, "lang": {"$ref": "#/$defs/Lang"}},
        "required": ["text"],
    }
    tool = one_tool({}, kind="prompt", prompt_input_schema=schema, state="deprecated")
    assert tool.name == "shop_v1" and tool.kind == "prompt"
    assert tool.definition["description"].startswith("[deprecated] Shop v1")
    assert tool.definition["inputSchema"] == {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 100}, "lang": {"type": "string", "enum": ["en", "fr"]}},
        "required": ["text"],
    }
    request = request_for(tool, {"text": "hi"})
    assert (request.method, request.path, request.body) == ("POST", b"", b'{"text":"hi"}')


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"id": "../../admin"}, "one path segment"),
        ({"id": ".."}, "one path segment"),
        ({"id": "a/b"}, "one path segment"),
        ({"id": "a\\b"}, "one path segment"),
        ({"id": "\x00"}, "one path segment"),
        ({"id": "..;jsessionid=1"}, "one path segment"),
        ({"id": ""}, "may not be empty"),
        ({"id": {"a": 1}}, "string, number or boolean"),
        ({}, "Missing required arguments: id"),
        ({"id": "1", "zzz": 1}, "Unknown arguments: zzz"),
        ({"id": "1", "X-Trace": "a\r\nX-Evil: 1"}, "one line"),
        ({"id": "1", "X-Trace": "é€"}, "Latin-1"),
        ({"id": "1", "q": [[1]]}, "string, number or boolean"),
        ([1, 2], "JSON object"),
    ],
)
def test_arguments_that_make_no_safe_request_are_refused(arguments, says):
    doc = {
        "paths": {
            "/items/{id}": {
                "get": {
                    "parameters": [
                        {"name": "X-Trace", "in": "header"},
                        {"name": "q", "in": "query", "schema": {"type": "array"}},
                    ]
                }
            }
        }
    }
    with pytest.raises(ToolInputError, match=re.escape(says)):
        request_for(one_tool(doc), arguments)


def test_arguments_are_percent_encoded_into_one_segment_and_query_values():
    tool = one_tool({"paths": {"/a b/{id}/x": {"get": {"parameters": [{"name": "q", "in": "query"}]}}}})
    request = request_for(tool, {"id": "é ?#%2e", "q": True})
    assert request.path == b"/a%20b/%C3%A9%20%3F%23%252e/x" and request.query == b"q=true"
    assert request_for(tool, {"id": 1.5}).path == b"/a%20b/1.5/x"
