"""The provider pages: thin forms over the provider services. Refusals are form errors or
404s, never 500s; another team's API, version or subscription is invisible."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.models import Api, Membership, Role, SubscriptionState, VersionState
from portal.services import lifecycle, provider, subscriptions
from portal.services.provider import TargetSpec

pytestmark = pytest.mark.django_db

OPENAPI_YAML = b"""openapi: 3.0.3
info: {title: Maps, version: '1'}
paths:
  /tiles:
    get:
      responses:
        '200': {description: ok}
"""


@pytest.fixture
def acme_api(acme, alice):
    return provider.create_api(acme, actor=alice, slug="acme-maps", name="Acme Maps")


def login(client, user):
    client.force_login(user)
    return client


def version_post(**overrides):
    data = {
        "version": "v1",
        "base_path": "/acme-maps/v1",
        "targets": "http://127.0.0.1:9 3\nhttp://127.0.0.2:9",
        "connect_timeout_ms": 1000,
        "read_timeout_ms": 5000,
        "total_timeout_ms": 10000,
        "retries": 2,
        "cache_ttl_seconds": 60,
    }
    data.update(overrides)
    return data


def test_an_owner_creates_an_api_from_the_page(client, alice, acme):
    response = login(client, alice).post(
        "/provider/", {"tenant": acme.pk, "name": "Acme Maps", "slug": "acme-maps", "visibility": "public"}
    )
    assert response.status_code == 302 and response["Location"] == "/provider/apis/acme-maps/"
    assert Api.objects.get(slug="acme-maps").owner == acme
    assert "Acme Maps" in client.get("/provider/").content.decode()


def test_a_developer_cannot_create_an_api_for_the_team(client, bob, acme):
    response = login(client, bob).post(
        "/provider/", {"tenant": acme.pk, "name": "Sneaky", "slug": "sneaky", "visibility": "public"}
    )
    assert response.status_code == 200  # the form again: the team is not among the choices
    assert not Api.objects.filter(slug="sneaky").exists()


def test_another_team_sees_a_404_for_every_provider_page(client, acme_api, charlie, globex, bob):
    for user in (charlie, bob):
        login(client, user)
        assert client.get("/provider/apis/acme-maps/").status_code == 404
        assert client.post("/provider/apis/acme-maps/plans/", {"name": "X"}).status_code == 404
        assert client.post("/provider/apis/acme-maps/versions/", version_post()).status_code == 404


def test_a_version_with_a_yaml_document_is_created(client, alice, acme_api, settings):
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    document = SimpleUploadedFile("maps.yaml", OPENAPI_YAML, content_type="application/yaml")
    response = login(client, alice).post("/provider/apis/acme-maps/versions/", version_post(openapi=document))
    assert response.status_code == 302
    version = acme_api.versions.get()
    assert version.openapi["paths"]["/tiles"]["get"]["responses"]["200"]["description"] == "ok"
    assert [(t.url, t.weight) for t in version.targets.all()] == [
        ("http://127.0.0.1:9", 3),
        ("http://127.0.0.2:9", 100),
    ]
    assert (version.retries, version.cache_ttl_seconds, version.read_timeout_ms) == (2, 60, 5000)


@pytest.mark.parametrize(
    "document, message",
    [
        (b'{"swagger": "2.0", "paths": {}}', "OpenAPI 3"),
        (b'{"openapi": "3.0.0"}', "paths"),
        (b"[1, 2]", "must be an object"),
        (b"\xff\xfe", "UTF-8"),
        (b"key: [unclosed", "neither JSON nor YAML"),
        (b'{"openapi": "3.0.0", "paths": {}, "x": "' + b"a" * (1024 * 1024) + b'"}', "larger than"),
    ],
)
def test_a_bad_document_is_a_form_error(document, message, client, alice, acme_api, settings):
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    upload = SimpleUploadedFile("doc.json", document)
    response = login(client, alice).post("/provider/apis/acme-maps/versions/", version_post(openapi=upload))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not acme_api.versions.exists()


@pytest.mark.parametrize(
    "targets, message",
    [
        ("http://169.254.169.254/latest", "link-local"),
        ("http://10.0.0.1", "private"),
        ("http://127.0.0.1:9 many", "URL WEIGHT"),
        ("http://127.0.0.1:9 ²", "URL WEIGHT"),  # a digit to str.isdigit(), not to int(): was a 500
        ("ftp://example.com", "http"),
        ("http://127.0.0.1:9 0", "weight"),
    ],
)
def test_bad_targets_are_form_errors(targets, message, client, alice, acme_api):
    response = login(client, alice).post("/provider/apis/acme-maps/versions/", version_post(targets=targets))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not acme_api.versions.exists()


def test_a_plan_and_the_lifecycle_from_the_page(client, alice, acme_api, staff):
    version = provider.create_version(
        acme_api, actor=staff, version="v1", base_path="/acme-maps/v1", targets=[TargetSpec("http://127.0.0.1:9")]
    )
    login(client, alice)
    assert (
        client.post("/provider/apis/acme-maps/plans/", {"name": "Free", "requests_per_minute": 60}).status_code == 302
    )
    assert client.post("/provider/apis/acme-maps/plans/", {"name": "Free"}).status_code == 400  # taken
    assert client.post("/provider/apis/acme-maps/plans/", {"name": "Zero", "daily_quota": 0}).status_code == 400
    assert client.post(f"/provider/apis/acme-maps/versions/{version.pk}/publish/").status_code == 302
    version.refresh_from_db()
    assert version.state == VersionState.PUBLISHED
    response = client.post(f"/provider/apis/acme-maps/versions/{version.pk}/deprecate/", {"sunset_at": "2001-01-01"})
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.state == VersionState.PUBLISHED  # a past sunset is refused with a message
    assert "future" in client.get("/provider/apis/acme-maps/").content.decode()
    assert client.post(f"/provider/apis/acme-maps/versions/{version.pk}/explode/").status_code == 404


def test_the_owning_team_decides_requests_and_others_get_404(client, alice, charlie, globex_app, acme_api, staff):
    Membership.objects.filter(user=charlie).update(role=Role.OWNER)
    version = provider.create_version(
        acme_api, actor=staff, version="v1", base_path="/acme-maps/v1", targets=[TargetSpec("http://127.0.0.1:9")]
    )
    lifecycle.publish_version(version, actor=staff)
    gold = provider.create_plan(acme_api, actor=alice, name="Gold", requires_approval=True)
    sub, _ = subscriptions.request_subscription(globex_app, acme_api, gold, actor=charlie)
    login(client, charlie)
    assert client.post(f"/provider/requests/{sub.pk}/approve/", {"reason": ""}).status_code == 404
    login(client, alice)
    assert "Globex App" in client.get("/provider/requests/").content.decode()
    client.post(f"/provider/requests/{sub.pk}/reject/", {"reason": ""})
    sub.refresh_from_db()
    assert sub.state == SubscriptionState.PENDING  # a rejection needs a reason
    assert client.post(f"/provider/requests/{sub.pk}/approve/", {"reason": "Welcome"}).status_code == 302
    sub.refresh_from_db()
    assert sub.state == SubscriptionState.APPROVED and sub.decided_by == alice


def test_an_owner_edits_a_published_version_and_the_gateway_hears_of_it(
    client, alice, acme_api, staff, settings, django_capture_on_commit_callbacks
):
    from portal.services import config_signal

    version = provider.create_version(
        acme_api, actor=staff, version="v1", base_path="/acme-maps/v1", targets=[TargetSpec("http://127.0.0.1:9")]
    )
    lifecycle.publish_version(version, actor=staff)
    login(client, alice)
    page = client.get(f"/provider/apis/acme-maps/versions/{version.pk}/edit/").content.decode()
    assert "http://127.0.0.1:9 100" in page
    edit = {key: value for key, value in version_post().items() if key not in ("version", "base_path")}
    refused = client.post(f"/provider/apis/acme-maps/versions/{version.pk}/edit/", edit)
    assert refused.status_code == 400 and "loopback" in refused.content.decode()
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    before = config_signal.current_config_version()
    with django_capture_on_commit_callbacks(execute=True):
        saved = client.post(f"/provider/apis/acme-maps/versions/{version.pk}/edit/", edit)
    assert saved.status_code == 302
    assert config_signal.current_config_version() == before + 1
    version.refresh_from_db()
    assert [(t.url, t.weight) for t in version.targets.all()] == [
        ("http://127.0.0.1:9", 3),
        ("http://127.0.0.2:9", 100),
    ]
    assert version.retries == 2 and version.base_path == "/acme-maps/v1"


def test_another_team_cannot_open_the_edit_page(client, acme_api, charlie, globex, staff):
    version = provider.create_version(
        acme_api, actor=staff, version="v1", base_path="/acme-maps/v1", targets=[TargetSpec("http://127.0.0.1:9")]
    )
    login(client, charlie)
    assert client.get(f"/provider/apis/acme-maps/versions/{version.pk}/edit/").status_code == 404
    assert client.post(f"/provider/apis/acme-maps/versions/{version.pk}/edit/", {"targets": "x"}).status_code == 404
