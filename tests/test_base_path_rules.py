"""The gateway serves its own operations endpoints under /_portico/: no API version may take
a base path there, in any case, whichever way the version is made or published."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from portal.models import ApiVersion, UpstreamTarget, VersionState
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
        lifecycle.publish_version(version, staff)
    version.refresh_from_db()
    assert version.state == VersionState.DRAFT
