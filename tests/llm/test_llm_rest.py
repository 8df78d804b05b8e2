"""The LLM management API under /api/v1/llm/: staff run it, secrets never come back, bad input
is a 400 in the API's error shape (never a 500), and tenants read only their own budgets."""

from decimal import Decimal

import pytest

from llm import crypto, services
from llm.models import Budget, ModelRoute, Provider, ProviderKey
from portal.services import keys as api_keys
from tests.api.conftest import assert_error, client_for
from tests.llm import factories as f

pytestmark = pytest.mark.django_db

SECRET = "sk-proj-SuperSecretValue-0123456789abcdef"


@pytest.fixture
def admin(staff):
    return client_for(staff)


@pytest.fixture
def llm_api(publisher, staff):
    return f.ai_api(publisher, staff)


def create_world(admin, llm_api) -> dict:
    provider = admin.post(
        "/api/v1/llm/providers/", {"name": "OpenAI", "kind": "openai", "base_url": f.MOCK + "/openai/v1"}
    )
    assert provider.status_code == 201, provider.content
    pid = provider.json()["id"]
    key = admin.post("/api/v1/llm/keys/", {"provider": pid, "secret": SECRET, "label": "prod", "priority": 1})
    assert key.status_code == 201, key.content
    mini = admin.post(
        "/api/v1/llm/models/",
        {"provider": pid, "upstream_name": "gpt-4o-mini", "input_price": "0.15", "capabilities": ["chat", "tools"]},
    )
    other = admin.post("/api/v1/llm/models/", {"provider": pid, "upstream_name": "gpt-4o"})
    assert mini.status_code == other.status_code == 201, (mini.content, other.content)
    route = admin.post(
        "/api/v1/llm/routes/",
        {
            "alias": "gpt-4o-mini",
            "api": llm_api.slug,
            "targets": [{"model": mini.json()["id"], "weight": 70}, {"model": other.json()["id"], "weight": 30}],
            "fallbacks": [other.json()["id"]],
            "pii_mode": "redact",
            "deny_list": "/forbidden/",
        },
    )
    assert route.status_code == 201, route.content
    return {
        "provider": pid,
        "key": key.json(),
        "mini": mini.json(),
        "other": other.json(),
        "route": route.json(),
    }


def test_staff_builds_a_route_end_to_end_and_reads_it_back(admin, llm_api):
    world = create_world(admin, llm_api)
    assert world["mini"]["input_price"] == "0.150000" and world["mini"]["output_price"] is None  # unknown, not 0
    route = admin.get(f"/api/v1/llm/routes/{world['route']['id']}/").json()
    assert route["api"] == llm_api.slug
    assert route["targets"] == [
        {"model": world["mini"]["id"], "weight": 70},
        {"model": world["other"]["id"], "weight": 30},
    ]
    assert route["fallbacks"] == [world["other"]["id"]]
    assert (route["pii_mode"], route["deny_list"]) == ("redact", "/forbidden/")

    changed = admin.patch(
        f"/api/v1/llm/routes/{route['id']}/", {"targets": [{"model": world["other"]["id"]}], "retries": 3}
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["targets"] == [{"model": world["other"]["id"], "weight": 100}]
    assert changed.json()["fallbacks"] == [world["other"]["id"]] and changed.json()["retries"] == 3
    listed = admin.get("/api/v1/llm/providers/").json()["results"]
    assert [p["name"] for p in listed] == ["OpenAI"]


def test_secrets_never_come_back_only_their_last_four_characters(admin, llm_api):
    world = create_world(admin, llm_api)
    key = world["key"]
    assert key["last4"] == "cdef" and "secret" not in key
    pages = [
        admin.get("/api/v1/llm/keys/"),
        admin.get(f"/api/v1/llm/keys/{key['id']}/"),
        admin.patch(f"/api/v1/llm/keys/{key['id']}/", {"label": "renamed", "priority": 3}),
        admin.post(f"/api/v1/llm/keys/{key['id']}/disable/", {"reason": "rotating"}),
        admin.post(f"/api/v1/llm/keys/{key['id']}/enable/"),
        admin.get("/api/v1/llm/providers/"),
        admin.get("/api/schema/"),
    ]
    for page in pages:
        assert page.status_code == 200, page.content
        assert SECRET not in page.content.decode() and "SuperSecret" not in page.content.decode()
    stored = ProviderKey.objects.get(pk=key["id"])
    assert crypto.decrypt(stored.secret_ciphertext) == SECRET and stored.label == "renamed"


def test_a_keys_secret_cannot_be_patched(admin, llm_api):
    key = create_world(admin, llm_api)["key"]
    assert_error(
        admin.patch(f"/api/v1/llm/keys/{key['id']}/", {"secret": "sk-new-0000000000000"}), 400, "invalid_input"
    )


@pytest.mark.parametrize(
    "path",
    ["/api/v1/llm/providers/", "/api/v1/llm/keys/", "/api/v1/llm/models/", "/api/v1/llm/routes/"],
)
def test_a_tenant_owner_can_neither_read_nor_write_the_llm_configuration(alice, acme, path):
    owner = client_for(alice)
    assert_error(owner.get(path), 403, "permission_denied")
    assert_error(owner.post(path, {"name": "Mine", "kind": "openai"}), 403, "permission_denied")
    assert not Provider.objects.exists()


def test_nobody_without_a_token_gets_in():
    from rest_framework.test import APIClient

    assert_error(APIClient().get("/api/v1/llm/budgets/"), 401, "not_authenticated")


BAD_PROVIDERS = [
    {},
    {"name": "x", "kind": "openai-ish"},
    {"name": "x", "kind": "openai", "base_url": "file:///etc/passwd"},
    {"name": "x", "kind": "openai", "base_url": "https://u:p@h/v1"},
    {"name": "x", "kind": "azure-openai"},
    {"name": "x", "kind": "azure-openai", "base_url": "https://a.openai.azure.com", "azure_api_version": "latest"},
    {"name": "a\x00b", "kind": "openai"},
    {"name": ["x"], "kind": "openai"},
    {"name": "x" * 500, "kind": "openai"},
    {"name": "x", "kind": "openai", "enabled": "maybe"},
]


@pytest.mark.parametrize("body", BAD_PROVIDERS)
def test_a_bad_provider_is_a_400_in_the_error_shape(admin, body):
    assert_error(admin.post("/api/v1/llm/providers/", body, format="json"), 400, "invalid_input")


@pytest.mark.parametrize(
    "body",
    [
        {"secret": SECRET},
        {"provider": 99999, "secret": SECRET},
        {"provider": 2**70, "secret": SECRET},
        {"provider": "PROVIDER", "secret": "sk-line\r\nbreak-000000"},
        {"provider": "PROVIDER", "secret": ""},
        {"provider": "PROVIDER", "secret": "x" * 5000},
        {"provider": "PROVIDER", "secret": SECRET, "priority": -1},
        {"provider": "PROVIDER", "secret": SECRET, "expires_at": "2000-01-01T00:00:00Z"},
        {"provider": "PROVIDER", "secret": SECRET, "expires_at": "tomorrow"},
    ],
)
def test_a_bad_key_is_a_400_and_stores_nothing(admin, staff, body):
    provider = f.provider(staff)
    body = {k: (provider.pk if v == "PROVIDER" else v) for k, v in body.items()}
    assert_error(admin.post("/api/v1/llm/keys/", body, format="json"), 400, "invalid_input")
    assert not ProviderKey.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "PROVIDER", "upstream_name": "m", "input_price": "-1"},
        {"provider": "PROVIDER", "upstream_name": "m", "input_price": "NaN"},
        {"provider": "PROVIDER", "upstream_name": "m", "input_price": "1e30"},
        {"provider": "PROVIDER", "upstream_name": "m", "output_price": "0.0000001"},
        {"provider": "PROVIDER", "upstream_name": "m", "capabilities": ["chat", "mind-reading"]},
        {"provider": "PROVIDER", "upstream_name": "m", "capabilities": []},
        {"provider": "PROVIDER", "upstream_name": "m", "capabilities": "chat"},
        {"provider": "PROVIDER", "upstream_name": "m", "context_window": 2**40},
        {"provider": "PROVIDER", "upstream_name": "m\nx"},
        {"provider": 123456789, "upstream_name": "m"},
    ],
)
def test_a_bad_model_is_a_400(admin, staff, body):
    provider = f.provider(staff)
    body = {k: (provider.pk if v == "PROVIDER" else v) for k, v in body.items()}
    assert_error(admin.post("/api/v1/llm/models/", body, format="json"), 400, "invalid_input")


@pytest.mark.parametrize(
    "change",
    [
        {"targets": []},
        {"targets": [{"model": "MODEL", "weight": 0}]},
        {"targets": [{"model": 987654321}]},
        {"targets": [{"model": "MODEL"}, {"model": "MODEL"}]},
        {"targets": "MODEL"},
        {"fallbacks": ["MODEL", "MODEL"]},
        {"fallbacks": [2**70]},
        {"alias": "bad alias"},
        {"alias": "a/b"},
        {"api": "rest-api"},
        {"api": "no-such-api"},
        {"retries": 6},
        {"timeout_seconds": 0},
        {"timeout_seconds": "Infinity"},
        {"first_byte_timeout_seconds": 100, "timeout_seconds": 10},
        {"deny_list": "/(/"},
        {"pii_mode": "encrypt"},
        {"pii_detectors": ["ssn"]},
        {"cache_ttl_seconds": -1},
    ],
)
def test_a_bad_route_is_a_400_and_changes_nothing(admin, staff, llm_api, api, change):
    api.slug = "rest-api"
    api.save()
    model = f.model(staff, f.provider(staff))
    body = {"alias": "r", "api": llm_api.slug, "targets": [{"model": model.pk}]}
    body.update(change)

    def resolve(value):
        if value == "MODEL":
            return model.pk
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    assert_error(admin.post("/api/v1/llm/routes/", resolve(body), format="json"), 400, "invalid_input")
    assert not ModelRoute.objects.exists()
    route = f.route(staff, llm_api, "ok", [model])
    assert_error(admin.patch(f"/api/v1/llm/routes/{route.pk}/", resolve(change), format="json"), 400, "invalid_input")
    route.refresh_from_db()
    assert route.alias == "ok" and route.targets.get().weight == 100


def test_a_model_still_routed_cannot_be_deleted_but_an_unused_one_can(admin, llm_api):
    world = create_world(admin, llm_api)
    assert_error(admin.delete(f"/api/v1/llm/models/{world['mini']['id']}/"), 400, "invalid_input")
    assert admin.delete(f"/api/v1/llm/routes/{world['route']['id']}/").status_code == 204
    assert admin.delete(f"/api/v1/llm/models/{world['mini']['id']}/").status_code == 204
    assert admin.delete(f"/api/v1/llm/keys/{world['key']['id']}/").status_code == 204


def test_a_non_json_body_is_a_400_not_a_500(admin):
    response = admin.generic("POST", "/api/v1/llm/providers/", "{not json", content_type="application/json")
    assert_error(response, 400, "invalid_request")


# -- budgets ---------------------------------------------------------------------------------------


@pytest.fixture
def budgets(staff, acme, app, alice, globex, globex_app):
    key, _secret = api_keys.create_api_key(app, actor=alice, name="k")
    return {
        "acme": services.create_budget(actor=staff, subject=acme, spend_limit_usd=Decimal("50")),
        "acme_app": services.create_budget(actor=staff, subject=app, tokens_per_minute=10_000),
        "acme_key": services.create_budget(actor=staff, subject=key, requests_per_minute=60),
        "globex": services.create_budget(actor=staff, subject=globex, spend_limit_usd=Decimal("5")),
        "globex_app": services.create_budget(actor=staff, subject=globex_app, spend_limit_usd=Decimal("1")),
    }


def test_a_tenant_sees_only_its_own_budgets_read_only(budgets, alice, vera, charlie):
    acme_ids = {budgets[n].pk for n in ("acme", "acme_app", "acme_key")}
    for person in (alice, vera):  # any member, a viewer too
        listed = client_for(person).get("/api/v1/llm/budgets/").json()["results"]
        assert {b["id"] for b in listed} == acme_ids
        assert {b["tenant"] for b in listed} == {"acme"}
    globex_listed = client_for(charlie).get("/api/v1/llm/budgets/").json()["results"]
    assert {b["id"] for b in globex_listed} == {budgets["globex"].pk, budgets["globex_app"].pk}

    owner = client_for(alice)
    assert_error(owner.get(f"/api/v1/llm/budgets/{budgets['globex'].pk}/"), 404, "not_found")
    mine = owner.get(f"/api/v1/llm/budgets/{budgets['acme'].pk}/").json()
    assert (mine["scope"], mine["subject_name"], mine["spend_limit_usd"]) == ("tenant", "Acme", "50.000000")
    assert_error(
        owner.patch(f"/api/v1/llm/budgets/{budgets['acme'].pk}/", {"spend_limit_usd": "5000"}), 403, "permission_denied"
    )
    assert_error(owner.delete(f"/api/v1/llm/budgets/{budgets['acme'].pk}/"), 403, "permission_denied")
    assert_error(
        owner.post("/api/v1/llm/budgets/", {"scope": "tenant", "subject": 1, "spend_limit_usd": "9"}),
        403,
        "permission_denied",
    )
    assert Budget.objects.get(pk=budgets["acme"].pk).spend_limit_usd == Decimal("50")


def test_staff_see_every_budget_and_filter_by_scope(admin, budgets):
    assert len(admin.get("/api/v1/llm/budgets/").json()["results"]) == 5
    tenants = admin.get("/api/v1/llm/budgets/", {"scope": "tenant"}).json()["results"]
    assert {b["id"] for b in tenants} == {budgets["acme"].pk, budgets["globex"].pk}


def test_staff_create_change_and_delete_budgets(admin, acme, app):
    created = admin.post(
        "/api/v1/llm/budgets/",
        {"scope": "application", "subject": app.pk, "period": "daily", "spend_limit_usd": "2.5"},
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["scope"], body["subject"], body["tenant"], body["period"]) == ("application", app.pk, "acme", "daily")
    changed = admin.patch(f"/api/v1/llm/budgets/{body['id']}/", {"tokens_per_minute": 500, "spend_limit_usd": None})
    assert changed.status_code == 200, changed.content
    assert (changed.json()["tokens_per_minute"], changed.json()["spend_limit_usd"]) == (500, None)
    assert_error(
        admin.patch(f"/api/v1/llm/budgets/{body['id']}/", {"tokens_per_minute": None}), 400, "invalid_input"
    )  # no limit left
    assert admin.delete(f"/api/v1/llm/budgets/{body['id']}/").status_code == 204


@pytest.mark.parametrize(
    "body",
    [
        {"scope": "tenant", "subject": 999999, "spend_limit_usd": "1"},
        {"scope": "galaxy", "subject": 1, "spend_limit_usd": "1"},
        {"scope": "tenant", "subject": "TENANT"},
        {"scope": "tenant", "subject": "TENANT", "spend_limit_usd": "0"},
        {"scope": "tenant", "subject": "TENANT", "spend_limit_usd": "-3"},
        {"scope": "tenant", "subject": "TENANT", "spend_limit_usd": "1e20"},
        {"scope": "tenant", "subject": "TENANT", "tokens_per_minute": 0},
        {"scope": "tenant", "subject": "TENANT", "requests_per_minute": 2**40},
        {"scope": "tenant", "subject": "TENANT", "period": "hourly", "spend_limit_usd": "1"},
        {"scope": "key", "subject": 2**70, "spend_limit_usd": "1"},
    ],
)
def test_a_bad_budget_is_a_400(admin, acme, body):
    body = {k: (acme.pk if v == "TENANT" else v) for k, v in body.items()}
    assert_error(admin.post("/api/v1/llm/budgets/", body, format="json"), 400, "invalid_input")
    assert not Budget.objects.exists()


def test_the_schema_documents_the_llm_operations():
    from io import StringIO

    import yaml
    from django.core.management import call_command

    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=StringIO())
    paths = yaml.safe_load(out.getvalue())["paths"]
    for resource in ("providers", "keys", "models", "routes", "budgets"):
        assert {"get", "post"} <= set(paths[f"/api/v1/llm/{resource}/"])
        assert {"get", "patch", "delete"} <= set(paths[f"/api/v1/llm/{resource}/{{id}}/"])
    key_schema = yaml.safe_load(out.getvalue())["components"]["schemas"]["LlmProviderKey"]
    assert "secret" not in key_schema["properties"] and "last4" in key_schema["properties"]
