"""Catalog read endpoints: what a developer may see, search, and the reference documents."""

import pytest

from portal.models import Visibility
from tests.api.conftest import assert_error, client_for
from tests.portal.catalog_builders import PETSTORE, make_api, make_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(publisher, staff, acme, globex):
    pets = make_api(publisher, staff, "pets", description="Cats and dogs", tags=("animals",), openapi=PETSTORE)
    make_plan(pets, "Hobby", requests_per_minute=10, daily_quota=1000)
    make_plan(pets, "Retired plan", is_active=False)
    make_api(publisher, staff, "maps", description="Tiles", tags=("geo",), states=("published", "deprecated"))
    make_api(publisher, staff, "drafty", states=("draft",))
    make_api(publisher, staff, "gone", states=("retired",))
    make_api(acme, staff, "acme-internal", visibility=Visibility.PRIVATE, tags=("geo",))
    make_api(globex, staff, "globex-internal", visibility=Visibility.PRIVATE)
    return pets


def slugs(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [api["slug"] for api in response.json()["results"]]


def test_catalog_lists_published_and_deprecated_apis_and_the_callers_private_ones(catalog, bob, charlie):
    assert slugs(client_for(bob).get("/api/v1/apis/")) == ["acme-internal", "maps", "pets"]
    assert slugs(client_for(charlie).get("/api/v1/apis/")) == ["globex-internal", "maps", "pets"]


def test_an_api_shows_visible_versions_with_sunset_and_active_plans_with_limits(catalog, bob):
    maps = client_for(bob).get("/api/v1/apis/maps/").json()
    assert [(v["version"], v["state"]) for v in maps["versions"]] == [("v2", "deprecated"), ("v1", "published")]
    assert maps["versions"][0]["sunset_at"] and maps["versions"][1]["sunset_at"] is None
    pets = client_for(bob).get("/api/v1/apis/pets/").json()
    assert pets["tags"] == ["animals"]
    assert [(p["name"], p["requests_per_minute"], p["daily_quota"]) for p in pets["plans"]] == [("Hobby", 10, 1000)]


@pytest.mark.parametrize("slug", ["drafty", "gone", "globex-internal", "no-such-api"])
def test_draft_retired_foreign_private_and_unknown_apis_are_404(catalog, bob, slug):
    assert_error(client_for(bob).get(f"/api/v1/apis/{slug}/"), 404, "not_found")


def test_search_matches_every_word_and_tags_filter(catalog, bob):
    client = client_for(bob)
    assert slugs(client.get("/api/v1/apis/", {"q": "dogs"})) == ["pets"]
    assert slugs(client.get("/api/v1/apis/", {"q": "cats tiles"})) == []
    assert slugs(client.get("/api/v1/apis/", {"tag": "geo"})) == ["acme-internal", "maps"]
    assert slugs(client.get("/api/v1/apis/", {"tag": ["geo", "animals"]})) == []
    assert slugs(client.get("/api/v1/apis/", {"q": "gone"})) == []


def test_search_never_reveals_another_tenants_private_api(catalog, charlie):
    assert slugs(client_for(charlie).get("/api/v1/apis/", {"tag": "geo"})) == ["maps"]


def test_reference_document_points_at_the_gateway_and_asks_for_the_key(catalog, bob, settings):
    settings.PORTICO_GATEWAY_URL = "http://127.0.0.1:8080"
    document = client_for(bob).get("/api/v1/apis/pets/versions/v1/openapi/").json()
    assert document["servers"] == [{"url": "http://127.0.0.1:8080/pets/v1"}]
    assert document["paths"] == PETSTORE["paths"]
    assert "PorticoKey" in document["components"]["securitySchemes"]


def test_reference_document_of_a_draft_retired_or_undocumented_version_is_404(catalog, bob, publisher, staff):
    make_api(publisher, staff, "half", states=("published", "draft"), openapi=PETSTORE)
    client = client_for(bob)
    assert_error(client.get("/api/v1/apis/half/versions/v2/openapi/"), 404, "not_found")
    assert_error(client.get("/api/v1/apis/gone/versions/v1/openapi/"), 404, "not_found")
    assert_error(client.get("/api/v1/apis/maps/versions/v1/openapi/"), 404, "not_found")
