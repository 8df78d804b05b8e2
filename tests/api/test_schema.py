"""The OpenAPI schema: valid OpenAPI 3, generated without warnings, served with local docs."""

from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema() -> dict:
    out = StringIO()
    # --fail-on-warn: an unresolved type or an enum clash fails the build instead of degrading the docs.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=StringIO())
    return yaml.safe_load(out.getvalue())


def test_the_schema_validates_as_openapi_3(schema):
    validate_schema(schema)  # raises on any violation of the OpenAPI 3.0 JSON schema
    assert schema["openapi"].startswith("3.")


def test_the_schema_documents_every_developer_and_staff_operation(schema):
    paths = schema["paths"]
    expected = {
        "/api/v1/apis/": {"get"},
        "/api/v1/apis/{slug}/versions/{version}/openapi/": {"get"},
        "/api/v1/applications/": {"get", "post"},
        "/api/v1/applications/{id}/": {"get", "patch", "delete"},
        "/api/v1/applications/{id}/keys/": {"get", "post"},
        "/api/v1/keys/{id}/rotate/": {"post"},
        "/api/v1/keys/{id}/revoke/": {"post"},
        "/api/v1/subscriptions/": {"get", "post"},
        "/api/v1/subscriptions/{id}/cancel/": {"post"},
        "/api/v1/subscriptions/{id}/approve/": {"post"},
        "/api/v1/subscriptions/{id}/reject/": {"post"},
        "/api/v1/versions/{id}/transition/": {"post"},
        "/api/v1/tokens/": {"get", "post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    assert schema["components"]["securitySchemes"]["AccessToken"]["scheme"] == "bearer"


def test_the_schema_and_docs_are_served_without_a_token_and_without_a_cdn():
    client = APIClient()
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200 and "/api/v1/applications/" in response.json()["paths"]
    for page in ("/api/docs/", "/api/redoc/"):
        html = client.get(page).content.decode()
        assert "/static/drf_spectacular_sidecar/" in html
        assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html


def test_every_operation_documents_the_error_shape(schema):
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]
    revoke = schema["paths"]["/api/v1/keys/{id}/revoke/"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409", "429"} <= set(revoke)
    assert revoke["409"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"401", "404"} <= set(operation["responses"]), f"{method} {path}"
