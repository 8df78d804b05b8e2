"""The catalog list: what developers see, search by name/description/tag, tag filters."""

import re

import pytest
from django.urls import reverse

from portal.models import Visibility
from tests.portal.catalog_builders import make_api

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(publisher, staff):
    """Three listed APIs (one only deprecated) and two that developers must never see."""
    make_api(publisher, staff, "weather", description="Forecasts by the hour", tags=("geo", "climate"))
    make_api(publisher, staff, "maps", description="Tiles and routing", tags=("geo",))
    make_api(publisher, staff, "payments", description="Card charges", tags=("money",), states=("deprecated",))
    make_api(publisher, staff, "drafty", description="Not ready", tags=("secret-tag",), states=("draft",))
    make_api(publisher, staff, "legacy", description="Switched off", tags=("old",), states=("retired",))


def names(response) -> list[str]:
    return re.findall(r'<h2><a href="/apis/[^"]+/">([^<]+)</a></h2>', response.content.decode())


def test_catalog_lists_published_and_deprecated_apis_but_not_draft_or_retired_ones(client, catalog):
    response = client.get(reverse("catalog"))
    assert response.status_code == 200
    assert names(response) == ["Maps", "Payments", "Weather"]
    assert "deprecated" in response.content.decode()


@pytest.mark.parametrize(
    "query,expected",
    [
        ("weather", ["Weather"]),  # name
        ("HOUR", ["Weather"]),  # description, case-insensitive
        ("geo", ["Maps", "Weather"]),  # tag
        ("routing tiles", ["Maps"]),  # every word must match somewhere
        ("routing forecasts", []),
        ("not ready", []),  # a draft API's description does not leak through search
        ("secret-tag", []),
    ],
)
def test_search_matches_name_description_and_tags(client, catalog, query, expected):
    assert names(client.get(reverse("catalog"), {"q": query})) == expected


def test_tag_filter_shows_only_tagged_apis_and_combines_with_search(client, catalog):
    assert names(client.get(reverse("catalog"), {"tag": "geo"})) == ["Maps", "Weather"]
    assert names(client.get(reverse("catalog"), {"tag": ["geo", "climate"]})) == ["Weather"]
    assert names(client.get(reverse("catalog"), {"tag": "geo", "q": "tiles"})) == ["Maps"]
    assert names(client.get(reverse("catalog"), {"tag": "money", "q": "tiles"})) == []


def test_tag_choices_come_only_from_visible_apis_with_their_counts(client, catalog):
    page = client.get(reverse("catalog")).content.decode()
    assert re.search(r"geo <span class=\"count\">2</span>", page)
    assert "secret-tag" not in page and ">old " not in page


def test_tag_links_toggle_their_tag_and_keep_the_search(client, catalog):
    page = client.get(reverse("catalog"), {"q": "forecasts", "tag": "geo"}).content.decode()
    links = dict(re.findall(r'<a class="tag[^"]*" href="([^"]+)"[^>]*>\s*([a-z-]+) <span', page))
    by_tag = {tag: href.replace("&amp;", "&") for href, tag in links.items()}
    assert by_tag["geo"] == "?q=forecasts"  # selected: the link removes it
    assert by_tag["climate"] == "?q=forecasts&tag=geo&tag=climate"  # the link adds it


def test_nothing_matching_says_so_and_offers_to_clear_the_filters(client, catalog):
    page = client.get(reverse("catalog"), {"q": "submarine"}).content.decode()
    assert "No API matches “submarine”" in page and "Show every API" in page


@pytest.mark.parametrize("query", ["%", "_", "' OR 1=1 --", "<script>alert(1)</script>", "x" * 5000, "\u00e9t\u00e9"])
def test_odd_search_input_is_answered_not_crashed_on(client, catalog, query):
    response = client.get(reverse("catalog"), {"q": query, "tag": query})
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.content.decode()


def test_private_api_is_listed_only_for_members_of_its_owner_tenant(client, acme, alice, charlie, globex, staff):
    make_api(acme, staff, "internal-billing", name="Internal Billing", visibility=Visibility.PRIVATE)
    assert names(client.get(reverse("catalog"))) == []
    client.force_login(charlie)
    assert names(client.get(reverse("catalog"), {"q": "billing"})) == []
    assert client.get(reverse("api_detail", args=["internal-billing"])).status_code == 404
    client.force_login(alice)
    assert names(client.get(reverse("catalog"), {"q": "billing"})) == ["Internal Billing"]
    assert client.get(reverse("api_detail", args=["internal-billing"])).status_code == 200


def test_the_catalog_costs_the_same_queries_for_three_apis_or_thirty(client, publisher, staff):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for_listing() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("catalog")).status_code == 200
        return len(captured)

    for n in range(3):
        make_api(publisher, staff, f"small{n}", tags=("a", "b"), states=("deprecated", "published"))
    few = queries_for_listing()
    for n in range(27):
        make_api(publisher, staff, f"large{n}", tags=("a", f"t{n}"), states=("published",))
    assert len(names(client.get(reverse("catalog")))) == 30
    assert queries_for_listing() == few


def test_descriptions_from_publishers_are_escaped(client, publisher, staff):
    make_api(publisher, staff, "xss", description='<img src=x onerror="alert(1)">')
    for url in (reverse("catalog"), reverse("api_detail", args=["xss"])):
        page = client.get(url).content.decode()
        assert "<img src=x" not in page and "&lt;img src=x" in page


def test_search_can_start_from_the_apis_of_several_tenants(acme, globex, staff):
    from portal.services.catalog import search_apis, visible_apis_for

    make_api(acme, staff, "acme-ledger", description="books", visibility=Visibility.PRIVATE)
    make_api(globex, staff, "globex-ledger", description="books", visibility=Visibility.PRIVATE)
    both = search_apis(None, "books", among=visible_apis_for([acme.pk, globex.pk]))
    assert [api.slug for api in both] == ["acme-ledger", "globex-ledger"]
    assert [api.slug for api in search_apis(acme, "books")] == ["acme-ledger"]
