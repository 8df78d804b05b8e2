"""Reference docs: Swagger UI served by the portal itself, the OpenAPI document pointed at
the gateway with the key declared, and a try-it key chooser that never holds a secret."""

import re

import pytest
from django.urls import reverse

from portal.models import Application, Visibility
from portal.services import keys, subscriptions
from tests.portal.catalog_builders import PETSTORE, make_api, make_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def pets(publisher, staff):
    """v1 deprecated and v2 published, both with a document; v3 draft and v4 retired."""
    api = make_api(publisher, staff, "pets", openapi=PETSTORE, states=("deprecated", "published", "draft", "retired"))
    make_plan(api, "Free", requests_per_minute=60)
    return api


def docs(client, version="v2", slug="pets"):
    return client.get(reverse("api_docs", args=[slug, version]))


def document(client, version="v2", slug="pets"):
    return client.get(reverse("api_openapi", args=[slug, version]))


def test_docs_load_swagger_ui_from_the_portals_own_static_files(client, pets):
    page = docs(client).content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page)
    assert any(a.endswith("swagger-ui-dist/swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui-dist/swagger-ui.css") for a in assets)
    assert all(a.startswith("/static/") for a in assets), assets  # nothing from a CDN or another host
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert b"".join(response.streaming_content if response.streaming else [response.content])


def test_the_docs_script_turns_off_swagger_ui_s_remote_validator(client, pets):
    response = client.get("/static/portal/catalog/docs.js")
    script = b"".join(response.streaming_content).decode()
    assert "validatorUrl: null" in script and "persistAuthorization: false" in script


def test_the_document_points_at_the_gateway_and_asks_for_the_key(client, pets, settings):
    served = document(client).json()
    assert served["servers"] == [{"url": f"{settings.PORTICO_GATEWAY_URL}/pets/v2"}]
    assert served["components"]["securitySchemes"]["PorticoKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": served["components"]["securitySchemes"]["PorticoKey"]["description"],
    }
    assert served["security"] == [{"PorticoKey": []}]
    assert served["paths"] == PETSTORE["paths"]
    pets.versions.get(version="v2").refresh_from_db()
    assert pets.versions.get(version="v2").openapi == PETSTORE  # the stored document is untouched


def test_a_swagger_2_document_gets_host_base_path_and_scheme_of_the_gateway(client, pets, settings):
    settings.PORTICO_GATEWAY_URL = "https://gw.example.test:8443"
    version = pets.versions.get(version="v2")
    version.openapi = {"swagger": "2.0", "info": {"title": "Old", "version": "1"}, "paths": {}}
    version.save()
    served = document(client).json()
    assert (served["host"], served["basePath"], served["schemes"]) == ("gw.example.test:8443", "/pets/v2", ["https"])
    assert served["securityDefinitions"]["PorticoKey"]["name"] == "X-API-Key"


@pytest.mark.parametrize("version", ["v3", "v4", "v9"])
def test_draft_retired_and_unknown_versions_have_no_docs(client, pets, version):
    assert docs(client, version).status_code == 404
    response = document(client, version)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_version_without_a_document_says_so_instead_of_a_blank_page(client, publisher, staff):
    make_api(publisher, staff, "bare")
    page = docs(client, "v1", "bare").content.decode()
    assert "has not attached a reference document" in page and "swagger-ui-bundle" not in page
    assert document(client, "v1", "bare").status_code == 404


def test_deprecated_docs_show_the_sunset_date_and_point_to_the_newest_version(client, pets):
    sunset = pets.versions.get(version="v1").sunset_at
    page = docs(client, "v1").content.decode()
    assert "deprecated and stops working on" in page and f"{sunset.day} {sunset:%B %Y}" in page
    assert f'Move to <a href="{reverse("api_docs", args=["pets", "v2"])}">v2</a>' in page
    assert "stops working" not in docs(client, "v2").content.decode()


def test_a_private_apis_docs_are_404_for_other_tenants(client, acme, alice, globex, charlie, staff):
    make_api(acme, staff, "ledger", openapi=PETSTORE, visibility=Visibility.PRIVATE)
    client.force_login(charlie)
    assert docs(client, "v1", "ledger").status_code == 404 and document(client, "v1", "ledger").status_code == 404
    client.force_login(alice)
    assert docs(client, "v1", "ledger").status_code == 200 and document(client, "v1", "ledger").status_code == 200


def test_try_it_offers_the_tenants_usable_keys_by_prefix_and_never_a_secret(
    client, pets, acme, alice, bob, globex, charlie
):
    free = pets.plans.get(name="Free")
    subscribed = Application.objects.create(tenant=acme, name="Subscribed")
    subscriptions.request_subscription(subscribed, pets, free, actor=alice)
    good, good_secret = keys.create_api_key(subscribed, actor=bob, name="ci")
    revoked, _ = keys.create_api_key(subscribed, actor=bob)
    keys.revoke_api_key(revoked, actor=bob)
    unsubscribed, _ = keys.create_api_key(Application.objects.create(tenant=acme, name="Elsewhere"), actor=bob)
    globex_app = Application.objects.create(tenant=globex, name="Globex App")
    subscriptions.request_subscription(globex_app, pets, free, actor=charlie)
    foreign, _ = keys.create_api_key(globex_app, actor=charlie)

    client.force_login(bob)
    page = docs(client).content.decode()
    offered = re.findall(r'<option value="(pt_[a-z0-9]+)">', page)
    assert offered == [good.prefix]
    assert "Subscribed (ci)" in page and good_secret not in page
    assert revoked.prefix not in page and unsubscribed.prefix not in page and foreign.prefix not in page


def test_try_it_tells_a_visitor_without_keys_what_to_do(client, pets, acme, alice):
    assert "Log in</a> to see which of your keys work here" in docs(client).content.decode()
    client.force_login(alice)
    assert "has an approved subscription with a usable key" in docs(client).content.decode()
