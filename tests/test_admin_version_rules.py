"""Staff's admin edits of a version keep the provider rules that protect what the gateways
route (docs/architecture.md, "What staff may edit in a version"): a published version keeps its API, base path
and host; a routed REST version keeps an enabled upstream target; timeouts keep their caps;
a retired version does not change. A refused edit is a message on the page, nothing saved."""

import pytest
from django.urls import reverse

from portal.models import ApiVersion, AuditEvent, UpstreamTarget, VersionState
from portal.services import admin_edits, lifecycle
from portal.services.errors import InvalidInput
from portal.services.provider import MAX_TIMEOUT_MS

pytestmark = pytest.mark.django_db


def as_shown(client, url) -> dict:
    """The change page's form and inlines posted back as the admin shows them."""
    page = client.get(url)
    assert page.status_code == 200
    data: dict = {}
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    for form in forms:
        for bound in form:
            value = bound.field.prepare_value(bound.value())
            if value is None or value is False:
                continue
            data[bound.html_name] = "on" if value is True else value
    return data


@pytest.fixture
def published(api):
    return api.versions.get()


def version_page(version) -> str:
    return reverse("admin:portal_apiversion_change", args=[version.pk])


def test_the_base_path_of_a_published_version_cannot_change_on_the_apis_page(client, staff, api, published):
    client.force_login(staff)
    url = reverse("admin:portal_api_change", args=[api.pk])
    data = as_shown(client, url)
    assert data["versions-0-base_path"] == "/weather/v1"
    response = client.post(url, {**data, "versions-0-base_path": "/weather/moved", "name": "Renamed"}, follow=True)
    assert "base path of a published version cannot change" in response.content.decode()
    published.refresh_from_db()
    api.refresh_from_db()
    assert published.base_path == "/weather/v1" and api.name == "Weather"  # the submit rolled back whole
    assert not AuditEvent.objects.filter(action="version.updated").exists()


def test_the_service_refuses_moving_a_published_version_however_it_is_called(staff, api, published, globex):
    published.base_path = "/elsewhere/v1"
    with pytest.raises(InvalidInput, match="base path"):
        admin_edits.save_object(published, actor=staff, changed=["base_path"])
    other = type(api).objects.create(slug="other", name="Other", owner=globex)
    moved = ApiVersion.objects.get(pk=published.pk)
    moved.api = other
    with pytest.raises(InvalidInput, match="api"):
        admin_edits.save_object(moved, actor=staff, changed=["api"])
    assert ApiVersion.objects.get(pk=published.pk).api_id == api.pk


def test_the_version_page_shows_a_published_versions_address_read_only(client, staff, published):
    client.force_login(staff)
    data = as_shown(client, version_page(published))
    assert "base_path" not in data and "api" not in data
    response = client.post(version_page(published), {**data, "base_path": "/sneaky", "retries": 2})
    assert response.status_code == 302
    published.refresh_from_db()
    assert published.base_path == "/weather/v1" and published.retries == 2  # policy edits still go through


def test_a_drafts_base_path_may_change(client, staff, draft_version):
    client.force_login(staff)
    data = as_shown(client, version_page(draft_version))
    assert client.post(version_page(draft_version), {**data, "base_path": "/weather/v1b"}).status_code == 302
    draft_version.refresh_from_db()
    assert draft_version.base_path == "/weather/v1b"


def test_a_published_version_keeps_an_enabled_target_but_may_swap_it(client, staff, published):
    client.force_login(staff)
    url = version_page(published)
    data = as_shown(client, url)
    data.pop("targets-0-enabled")  # untick the only target
    response = client.post(url, data, follow=True)
    assert "needs at least one enabled upstream target" in response.content.decode()
    assert published.targets.get().enabled
    # Replacing it in one submit (delete the old, add a new one) is one valid change.
    data = as_shown(client, url)
    data.update({"targets-0-DELETE": "on", "targets-1-url": "http://127.0.0.1:10", "targets-1-weight": 100})
    data["targets-1-enabled"] = "on"
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert [t.url for t in UpstreamTarget.objects.filter(version=published)] == ["http://127.0.0.1:10"]


def test_timeouts_keep_their_caps_in_the_admin(client, staff, published):
    client.force_login(staff)
    url = version_page(published)
    response = client.post(url, {**as_shown(client, url), "read_timeout_ms": MAX_TIMEOUT_MS + 1}, follow=True)
    assert "at most" in response.content.decode()
    published.refresh_from_db()
    assert published.read_timeout_ms != MAX_TIMEOUT_MS + 1


def test_a_retired_version_does_not_change(client, staff, published):
    lifecycle.retire_version(published, actor=staff, reason="old")
    client.force_login(staff)
    url = version_page(published)
    response = client.post(url, {**as_shown(client, url), "retries": 3}, follow=True)
    assert "retired version cannot change" in response.content.decode()
    published.refresh_from_db()
    assert published.state == VersionState.RETIRED and published.retries != 3
