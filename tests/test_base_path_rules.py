"""The gateway serves its own operations endpoints under /_portico/ and the LLM endpoints under
/v1/: no API version may take a base path over them, in any case, whichever way the version
is made or published. REST versions need a base path; an AI API's versions need none."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from portal.models import Api, ApiVersion, UpstreamTarget, VersionState
from portal.models.catalog import ApiKind
from portal.services import lifecycle
from portal.services.errors import InvalidInput

pytestmark = pytest.mark.django_db

RESERVED = ["/_portico", "/_portico/healthz", "/_Portico/v1", "/_PORTICO", "/_porticoapi"]
ALLOWED = ["/portico", "/portico/_portico", "/api/_portico", "/x_portico", "/__portico"]


def unsaved(draft_version, base_path: str) -> ApiVersion:
    return ApiVersion(api=draft_version.api, version="v9", base_path=base_path)


@pytest.mark.parametrize("base_path", RESERVED)
def test_full_clean_refuses_a_base_path_under_the_operations_namespace(draft_version, base_path):
    with pytest.raises(ValidationError) as refused:
        unsaved(draft_version, base_path).full_clean()
    errors = refused.value.error_dict["base_path"]
    assert [e.code for e in errors] == ["reserved"]
    assert "/_portico" in errors[0].messages[0] and "reserved" in errors[0].messages[0]


@pytest.mark.parametrize("base_path", ALLOWED)
def test_full_clean_accepts_paths_that_only_look_alike(draft_version, base_path):
    unsaved(draft_version, base_path).full_clean()


def test_the_admin_form_refuses_a_reserved_base_path(client, staff, draft_version):
    client.force_login(staff)
    url = reverse("admin:portal_apiversion_change", args=[draft_version.pk])
    form = {
        "api": draft_version.api.pk,
        "version": "v1",
        "host": "",
        "openapi": "{}",
        "load_balancing": draft_version.load_balancing,
        "connect_timeout_ms": 2000,
        "read_timeout_ms": 30000,
        "total_timeout_ms": 60000,
        "retries": 1,
        "cache_ttl_seconds": 0,
        "max_request_bytes": 1024,
        "targets-TOTAL_FORMS": 0,
        "targets-INITIAL_FORMS": 0,
    }
    response = client.post(url, {**form, "base_path": "/_Portico/metrics"})
    assert response.status_code == 200  # the form again, with its error, not a redirect
    assert "reserved for the gateway" in response.content.decode()
    draft_version.refresh_from_db()
    assert draft_version.base_path == "/weather/v1"
    # The same form with an ordinary path saves: the reserved prefix was the only objection.
    assert client.post(url, {**form, "base_path": "/weather/v1b"}).status_code == 302
    draft_version.refresh_from_db()
    assert draft_version.base_path == "/weather/v1b"


def test_publishing_a_version_saved_without_validation_is_refused(publisher, staff, draft_version):
    # objects.create skips full_clean, as rows made before the rule did: publishing is the gate.
    version = ApiVersion.objects.create(api=draft_version.api, version="ops", base_path="/_portico")
    UpstreamTarget.objects.create(version=version, url="http://127.0.0.1:9")
    with pytest.raises(InvalidInput, match="reserved"):
        lifecycle.publish_version(version, actor=staff)
    version.refresh_from_db()
    assert version.state == VersionState.DRAFT


# -- the gateway's LLM endpoints (/v1/chat/completions, /v1/embeddings, /v1/models, /v1/messages)

SHADOWING = [
    "/v1",
    "/v1/chat",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/messages",
    "/V1/Chat",  # in any case, like /_portico
    "/v1/models/gpt-4o",  # OpenAI's "retrieve model" lives under /v1/models
    "/v1/messages/count_tokens",  # and Anthropic's token counting under /v1/messages
]
NOT_SHADOWING = ["/v10", "/v1chat", "/v1/chat-x", "/v1/model", "/v1/completions", "/v2/chat/completions", "/api/v1"]


@pytest.mark.parametrize("base_path", SHADOWING)
def test_full_clean_refuses_a_base_path_that_would_shadow_the_llm_endpoints(draft_version, base_path):
    with pytest.raises(ValidationError) as refused:
        unsaved(draft_version, base_path).full_clean()
    errors = refused.value.error_dict["base_path"]
    assert [e.code for e in errors] == ["reserved_llm"]
    assert "/v1/chat/completions" in errors[0].messages[0]


@pytest.mark.parametrize("base_path", NOT_SHADOWING)
def test_full_clean_accepts_paths_beside_the_llm_endpoints(draft_version, base_path):
    unsaved(draft_version, base_path).full_clean()


def test_the_admin_form_refuses_a_base_path_over_the_llm_endpoints(client, staff, draft_version):
    client.force_login(staff)
    url = reverse("admin:portal_apiversion_change", args=[draft_version.pk])
    form = {
        "api": draft_version.api.pk,
        "version": "v1",
        "host": "",
        "openapi": "{}",
        "load_balancing": draft_version.load_balancing,
        "connect_timeout_ms": 2000,
        "read_timeout_ms": 30000,
        "total_timeout_ms": 60000,
        "retries": 1,
        "cache_ttl_seconds": 0,
        "max_request_bytes": 1024,
        "targets-TOTAL_FORMS": 0,
        "targets-INITIAL_FORMS": 0,
        "base_path": "/v1/chat",
    }
    response = client.post(url, form)
    assert response.status_code == 200 and "shadow the gateway" in response.content.decode()
    draft_version.refresh_from_db()
    assert draft_version.base_path == "/weather/v1"


@pytest.mark.parametrize("base_path", ["/v1", "/v1/messages"])
def test_publishing_a_version_saved_over_the_llm_endpoints_is_refused(staff, draft_version, base_path):
    version = ApiVersion.objects.create(api=draft_version.api, version="llm", base_path=base_path)
    UpstreamTarget.objects.create(version=version, url="http://127.0.0.1:9")
    with pytest.raises(InvalidInput, match="LLM endpoints"):
        lifecycle.publish_version(version, actor=staff)
    version.refresh_from_db()
    assert version.state == VersionState.DRAFT


# -- REST versions need a base path; AI versions need none


def test_a_rest_version_without_a_base_path_is_refused_by_clean_and_by_publishing(staff, draft_version):
    with pytest.raises(ValidationError) as refused:
        unsaved(draft_version, "").full_clean()
    assert "base_path" in refused.value.error_dict
    version = ApiVersion.objects.create(api=draft_version.api, version="nopath", base_path=None)
    UpstreamTarget.objects.create(version=version, url="http://127.0.0.1:9")
    with pytest.raises(InvalidInput, match="needs a base path"):
        lifecycle.publish_version(version, actor=staff)


def test_an_ai_apis_versions_need_no_base_path_nor_upstream_targets(publisher, staff):
    ai = Api.objects.create(slug="llm", name="LLM", owner=publisher, kind=ApiKind.AI)
    first = ApiVersion(api=ai, version="v1", base_path=None)
    first.full_clean()
    first.save()
    second = ApiVersion.objects.create(api=ai, version="v2", base_path=None)  # several NULLs stay unique
    assert lifecycle.publish_version(first, actor=staff).state == VersionState.PUBLISHED
    assert lifecycle.publish_version(second, actor=staff).state == VersionState.PUBLISHED


def test_an_ai_api_whose_versions_lack_base_paths_cannot_become_rest(publisher):
    ai = Api.objects.create(slug="llm", name="LLM", owner=publisher, kind=ApiKind.AI)
    ApiVersion.objects.create(api=ai, version="v1", base_path=None)
    ai.kind = ApiKind.REST
    with pytest.raises(ValidationError) as refused:
        ai.full_clean()
    assert "kind" in refused.value.error_dict


def test_an_ai_apis_catalog_pages_show_the_gateways_v1_as_its_base_url(client, publisher, staff, settings):
    settings.PORTICO_GATEWAY_URL = "http://gw.example:8080/"
    ai = Api.objects.create(slug="llm", name="LLM", owner=publisher, kind=ApiKind.AI)
    lifecycle.publish_version(ApiVersion.objects.create(api=ai, version="v1", base_path=None), actor=staff)
    for url in (reverse("api_detail", args=["llm"]), reverse("api_docs", args=["llm", "v1"])):
        page = client.get(url)
        assert page.status_code == 200 and "http://gw.example:8080/v1" in page.content.decode()


# -- the gateway's MCP server (/mcp, exactly)


@pytest.mark.parametrize("base_path", ["/mcp", "/MCP", "/Mcp"])
def test_full_clean_refuses_the_mcp_endpoint(draft_version, base_path):
    with pytest.raises(ValidationError) as refused:
        unsaved(draft_version, base_path).full_clean()
    assert [e.code for e in refused.value.error_dict["base_path"]] == ["reserved_mcp"]


@pytest.mark.parametrize("base_path", ["/mcp/tools", "/mcpx", "/api/mcp"])
def test_full_clean_accepts_paths_beside_the_mcp_endpoint(draft_version, base_path):
    unsaved(draft_version, base_path).full_clean()


def test_publishing_a_version_at_the_mcp_endpoint_is_refused(staff, draft_version):
    version = ApiVersion.objects.create(api=draft_version.api, version="mcp", base_path="/mcp")
    UpstreamTarget.objects.create(version=version, url="http://127.0.0.1:9")
    with pytest.raises(InvalidInput, match="MCP"):
        lifecycle.publish_version(version, actor=staff)
    version.refresh_from_db()
    assert version.state == VersionState.DRAFT
