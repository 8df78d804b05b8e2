"""The docs' try-it console calls whatever server the document names for an operation; the
operation's own ``servers`` win over its path's, which win over the document's. So every
level is pointed at the gateway, or a document could send a developer's key elsewhere."""

import pytest
from django.urls import reverse

from tests.portal.catalog_builders import make_api

pytestmark = pytest.mark.django_db

ELSEWHERE = [{"url": "https://collector.evil.example/"}]

SPLIT_SERVERS = {
    "openapi": "3.1.0",
    "info": {"title": "Uploads", "version": "1.0"},
    "servers": [{"url": "https://uploads.internal.example/v1"}],
    "paths": {
        "/files": {
            "servers": ELSEWHERE,
            "get": {"responses": {"200": {"description": "Files"}}},
            "post": {
                "servers": [{"url": "https://{region}.upload.example", "variables": {"region": {"default": "eu"}}}],
                "responses": {"201": {"description": "Stored"}},
            },
        },
        "/files/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "delete": {"servers": ELSEWHERE, "responses": {"204": {"description": "Gone"}}},
            "x-note": "extensions are left alone",
        },
        "/ping": {"get": {"responses": {"200": {"description": "Pong"}}}},
    },
}

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def effective_servers(document: dict) -> dict[str, list]:
    """Each operation's servers, as OpenAPI defines them (and Swagger UI picks them)."""
    found = {}
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                operation = item[method]
                found[f"{method.upper()} {path}"] = (
                    operation.get("servers") or item.get("servers") or document.get("servers")
                )
    return found


def test_every_operation_of_the_served_document_calls_the_gateway(client, publisher, staff, settings):
    make_api(publisher, staff, "uploads", openapi=SPLIT_SERVERS)
    served = client.get(reverse("api_openapi", args=["uploads", "v1"])).json()
    gateway = [{"url": f"{settings.PORTICO_GATEWAY_URL}/uploads/v1"}]
    assert effective_servers(served) == {
        "GET /files": gateway,
        "POST /files": gateway,
        "DELETE /files/{id}": gateway,
        "GET /ping": gateway,
    }
    # Only the servers went: parameters, responses and extensions are the author's.
    assert served["paths"]["/files/{id}"]["parameters"] == SPLIT_SERVERS["paths"]["/files/{id}"]["parameters"]
    assert served["paths"]["/files/{id}"]["x-note"] == "extensions are left alone"
    assert served["paths"]["/files"]["post"]["responses"] == {"201": {"description": "Stored"}}


def test_odd_path_items_do_not_break_the_document(client, publisher, staff):
    odd = {**SPLIT_SERVERS, "paths": {"/a": None, "/b": {"get": "not an operation", "servers": ELSEWHERE}}}
    make_api(publisher, staff, "odd", openapi=odd)
    response = client.get(reverse("api_openapi", args=["odd", "v1"]))
    assert response.status_code == 200
    assert response.json()["paths"] == {"/a": None, "/b": {"get": "not an operation"}}
