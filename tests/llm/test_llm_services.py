"""The LLM control plane's services: staff only, the model's own validation as InvalidInput,
an audit event per change (never a secret in it), and a config change published on commit."""

from decimal import Decimal

import pytest
from django.utils import timezone

from llm import crypto, services
from llm.models import KeyState, Provider, ProviderKey, RouteTarget, TargetRole
from portal.models import AuditEvent
from portal.services import keys
from portal.services.config_signal import current_config_version
from portal.services.errors import InvalidInput, PermissionDenied
from tests.llm import factories as f

pytestmark = pytest.mark.django_db

SECRET = "sk-live-abcdefghijklmnopqrstuvwxyz0123456789WXYZ"


@pytest.fixture
def llm_api(publisher, staff):
    return f.ai_api(publisher, staff)


@pytest.fixture
def openai(staff):
    return f.provider(staff)


@pytest.fixture
def mini(staff, openai):
    return f.model(staff, openai)


# -- who may ---------------------------------------------------------------------------------------


def test_only_staff_may_change_the_llm_configuration(alice, acme, openai, mini, llm_api):
    attempts = [
        lambda: services.create_provider(actor=alice, name="x", kind="openai"),
        lambda: services.update_provider(openai, actor=alice, enabled=False),
        lambda: services.add_key(openai, actor=alice, secret=SECRET),
        lambda: services.create_model(actor=alice, provider=openai, upstream_name="x"),
        lambda: f.route(alice, llm_api, "x", [mini]),
        lambda: services.create_budget(actor=alice, subject=acme, spend_limit_usd=Decimal(1)),
        lambda: services.delete_provider(openai, actor=alice),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied):
            attempt()
    assert Provider.objects.get(pk=openai.pk).enabled


# -- providers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("openai", "https://api.openai.com/v1"),
        ("mistral", "https://api.mistral.ai/v1"),
        ("anthropic", "https://api.anthropic.com"),
        ("gemini", "https://generativelanguage.googleapis.com"),
    ],
)
def test_a_provider_without_a_base_url_gets_its_kinds_public_endpoint(staff, kind, expected):
    assert services.create_provider(actor=staff, name=kind, kind=kind).base_url == expected


@pytest.mark.parametrize("kind", ["azure-openai", "openai-compatible"])
def test_azure_and_compatible_providers_need_a_base_url(staff, kind):
    with pytest.raises(InvalidInput, match="needs a base URL"):
        services.create_provider(actor=staff, name="x", kind=kind)


def test_azure_gets_a_default_api_version_and_a_malformed_one_is_refused(staff):
    azure = services.create_provider(
        actor=staff, name="az", kind="azure-openai", base_url="https://acme.openai.azure.com/"
    )
    assert (azure.base_url, azure.azure_api_version) == ("https://acme.openai.azure.com", "2024-10-21")
    for bad in ("latest", "2024-13-01", "2024-10-21; drop", "2024-10-21-beta"):
        with pytest.raises(InvalidInput, match="API version"):
            services.update_provider(azure, actor=staff, azure_api_version=bad)
    assert services.update_provider(azure, actor=staff, azure_api_version="2025-04-01-preview").azure_api_version


def test_only_azure_takes_an_api_version(staff):
    with pytest.raises(InvalidInput, match="Only Azure"):
        services.create_provider(actor=staff, name="o", kind="openai", azure_api_version="2024-10-21")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com",
        "javascript:alert(1)",
        "https://user:pw@api.example.com/v1",  # credentials belong in the key pool
        "https://api.example.com/v1?key=x",
        "http://",
        "https://api.example.com/v 1",
    ],
)
def test_a_base_url_that_is_not_a_plain_http_url_is_refused(staff, url):
    with pytest.raises(InvalidInput):
        services.create_provider(actor=staff, name="x", kind="openai-compatible", base_url=url)


def test_a_provider_with_keys_keeps_its_kind(staff, openai):
    services.add_key(openai, actor=staff, secret=SECRET)
    with pytest.raises(InvalidInput, match="keeps its kind"):
        services.update_provider(openai, actor=staff, kind="anthropic")


def test_unknown_fields_and_nul_characters_are_refused(staff, openai):
    with pytest.raises(InvalidInput, match="Cannot change"):
        services.update_provider(openai, actor=staff, created_at=timezone.now())
    with pytest.raises(InvalidInput, match="NUL"):
        services.update_provider(openai, actor=staff, name="a\x00b")


# -- the key pool --------------------------------------------------------------------------------------


def test_a_key_is_stored_encrypted_with_only_its_last_four_characters_in_clear(staff, openai):
    key = services.add_key(openai, actor=staff, secret=f"  {SECRET}\n", label="prod", priority=2)
    row = ProviderKey.objects.get(pk=key.pk)
    assert SECRET not in row.secret_ciphertext and row.last4 == "WXYZ"
    assert crypto.decrypt(row.secret_ciphertext) == SECRET  # surrounding whitespace trimmed
    event = AuditEvent.objects.get(action="llm.key.added")
    assert SECRET not in str(event.details) and event.details["last4"] == "WXYZ"


@pytest.mark.parametrize("secret", ["", "   ", "sk-abc\r\nX-Injected: 1", "sk abc", "sk-ünïcode-key", "x" * 5000])
def test_a_secret_that_could_not_be_an_http_header_value_is_refused(staff, openai, secret):
    with pytest.raises(InvalidInput):
        services.add_key(openai, actor=staff, secret=secret)
    assert not ProviderKey.objects.exists()


def test_a_short_secret_shows_nothing_of_itself(staff, openai):
    assert services.add_key(openai, actor=staff, secret="ollama").last4 == ""


def test_a_secret_cannot_be_changed_only_replaced(staff, openai):
    key = services.add_key(openai, actor=staff, secret=SECRET)
    with pytest.raises(InvalidInput, match="cannot be changed"):
        services.update_key(key, actor=staff, secret="sk-other-000000000000")


def test_keys_are_disabled_enabled_and_rested_with_their_state_recorded(staff, openai):
    key = services.add_key(openai, actor=staff, secret=SECRET)
    assert services.disable_key(key, actor=staff, reason="leaked").state == KeyState.DISABLED
    with pytest.raises(InvalidInput, match="time in the future"):
        services.set_key_state(key, actor=staff, state=KeyState.RATE_LIMITED)
    later = timezone.now() + timezone.timedelta(minutes=5)
    rested = services.set_key_state(key, actor=staff, state=KeyState.RATE_LIMITED, until=later)
    assert (rested.state, rested.state_until) == (KeyState.RATE_LIMITED, later)
    enabled = services.enable_key(key, actor=staff)
    assert (enabled.state, enabled.state_until) == (KeyState.ENABLED, None)
    actions = list(AuditEvent.objects.filter(object_id=str(key.pk)).values_list("action", flat=True))
    assert {"llm.key.disabled", "llm.key.rate_limited", "llm.key.enabled"} <= set(actions)


def test_a_key_that_expired_already_is_refused(staff, openai):
    with pytest.raises(InvalidInput, match="future"):
        services.add_key(openai, actor=staff, secret=SECRET, expires_at=timezone.now())


# -- models ------------------------------------------------------------------------------------------


def test_an_unknown_price_stays_unknown_never_zero(staff, openai):
    local = services.create_model(actor=staff, provider=openai, upstream_name="llama3.1:8b")
    local.refresh_from_db()
    assert (local.input_price, local.output_price, local.cached_input_price) == (None, None, None)
    priced = f.model(staff, openai, "gpt-4o", input_price="2.5", cached_input_price=Decimal("1.25"))
    priced.refresh_from_db()
    assert (priced.input_price, priced.cached_input_price) == (Decimal("2.5"), Decimal("1.25"))


@pytest.mark.parametrize("price", ["-1", "NaN", "Infinity", "abc", True, "1" * 20])
def test_a_price_that_is_not_a_finite_positive_amount_is_refused(staff, openai, price):
    with pytest.raises(InvalidInput):
        services.create_model(actor=staff, provider=openai, upstream_name="m", input_price=price)


@pytest.mark.parametrize("capabilities", [[], ["chat", "chat"], ["chat", "telepathy"], "chat", [1]])
def test_capabilities_are_a_list_of_known_names(staff, openai, capabilities):
    with pytest.raises(InvalidInput):
        services.create_model(actor=staff, provider=openai, upstream_name="m", capabilities=capabilities)


def test_an_upstream_model_is_defined_once_per_provider(staff, openai, mini):
    with pytest.raises(InvalidInput, match="already has a model"):
        f.model(staff, openai, "gpt-4o-mini")


# -- routes --------------------------------------------------------------------------------------------


@pytest.fixture
def claude(staff):
    return f.model(staff, f.provider(staff, kind="anthropic", path="/anthropic"), "claude-3-5-haiku-20241022")


def test_a_route_keeps_weighted_targets_and_an_ordered_fallback_chain(staff, llm_api, mini, claude, openai):
    gpt4o = f.model(staff, openai, "gpt-4o")
    route = f.route(
        staff, llm_api, "claude:fast", [services.TargetSpec(mini, 70), services.TargetSpec(claude, 30)], [gpt4o, mini]
    )
    members = list(RouteTarget.objects.filter(route=route).order_by("role", "position", "pk"))
    assert [(m.role, m.model_id, m.weight) for m in members if m.role == TargetRole.TARGET] == [
        ("target", mini.pk, 70),
        ("target", claude.pk, 30),
    ]
    assert [m.model_id for m in members if m.role == TargetRole.FALLBACK] == [gpt4o.pk, mini.pk]
    assert AuditEvent.objects.get(action="llm.route.created").details["fallbacks"] == [gpt4o.pk, mini.pk]


def test_updating_a_routes_targets_replaces_them_and_keeps_its_fallbacks(staff, llm_api, mini, claude):
    route = f.route(staff, llm_api, "fast", [mini], [claude])
    services.update_route(route, actor=staff, targets=[services.TargetSpec(claude, 5)], retries=3)
    route.refresh_from_db()
    assert route.retries == 3
    assert [(t.role, t.model_id, t.weight) for t in route.targets.order_by("role")] == [
        ("fallback", claude.pk, 1),
        ("target", claude.pk, 5),
    ]


@pytest.mark.parametrize(
    ("targets", "fallbacks", "message"),
    [
        ([], [], "at least one target"),
        ([("mini", 0)], [], "weight"),
        ([("mini", -5)], [], "weight"),
        ([("mini", 10**7)], [], "weight"),
        ([("mini", 1), ("mini", 2)], [], "target of a route at most once"),
        ([("mini", 1)], ["claude", "claude"], "fallback chain at most once"),
    ],
)
def test_a_route_refuses_targets_it_could_not_serve(staff, llm_api, mini, claude, targets, fallbacks, message):
    by_name = {"mini": mini, "claude": claude}
    specs = [services.TargetSpec(by_name[name], weight) for name, weight in targets]
    with pytest.raises(InvalidInput, match=message):
        f.route(staff, llm_api, "r", specs, [by_name[name] for name in fallbacks])


def test_a_route_is_published_only_through_an_ai_api(staff, api, mini):
    with pytest.raises(InvalidInput, match="REST API"):
        f.route(staff, api, "r", [mini])


def test_chat_and_embedding_models_do_not_mix_in_a_route(staff, llm_api, openai, mini):
    embed = f.model(staff, openai, "text-embedding-3-small", capabilities=["embeddings"])
    with pytest.raises(InvalidInput, match="same kind of call"):
        f.route(staff, llm_api, "r", [mini], [embed])
    route = f.route(staff, llm_api, "chat", [mini], [f.model(staff, openai, "gpt-4o")])
    with pytest.raises(InvalidInput, match="same kind of call"):
        services.update_model(mini, actor=staff, capabilities=["embeddings"])  # its fallback serves chat
    assert route.targets.get(role="target").model.capabilities == ["chat"]


@pytest.mark.parametrize("alias", ["", "-leading", "has space", "a/b", "x" * 101, "ünï", "a\x00b"])
def test_an_alias_is_slug_like(staff, llm_api, mini, alias):
    with pytest.raises(InvalidInput):
        f.route(staff, llm_api, alias, [mini])


def test_aliases_are_unique_in_any_letter_case(staff, llm_api, mini):
    f.route(staff, llm_api, "GPT-4o-mini", [mini])
    with pytest.raises(InvalidInput, match="already exists"):
        f.route(staff, llm_api, "gpt-4o-mini", [mini])


@pytest.mark.parametrize(
    ("deny_list", "message"),
    [("ok\n/(unclosed/\n", "not a valid regex"), ("/.*/", "matches everything"), ("/a|/", "matches everything")],
)
def test_a_deny_list_with_a_broken_or_catch_all_regex_is_refused(staff, llm_api, mini, deny_list, message):
    with pytest.raises(InvalidInput, match=message):
        f.route(staff, llm_api, "r", [mini], deny_list=deny_list)


def test_a_pii_mode_needs_a_detector_and_first_byte_fits_in_the_timeout(staff, llm_api, mini):
    with pytest.raises(InvalidInput, match="detector"):
        f.route(staff, llm_api, "r", [mini], pii_mode="mask", pii_detectors=[])
    with pytest.raises(InvalidInput, match="first-byte"):
        f.route(staff, llm_api, "r", [mini], timeout_seconds=5, first_byte_timeout_seconds=10)
    with pytest.raises(InvalidInput):
        f.route(staff, llm_api, "r", [mini], pii_detectors=["email", "ssn"])


def test_a_model_or_provider_still_routed_cannot_be_deleted(staff, llm_api, openai, mini):
    route = f.route(staff, llm_api, "r", [mini])
    with pytest.raises(InvalidInput, match="still used"):
        services.delete_model(mini, actor=staff)
    with pytest.raises(InvalidInput, match="still used"):
        services.delete_provider(openai, actor=staff)
    assert not AuditEvent.objects.filter(action__endswith=".deleted").exists()  # the refusal left no trace
    services.delete_route(route, actor=staff)
    services.delete_provider(openai, actor=staff)
    assert not Provider.objects.exists()


# -- budgets -------------------------------------------------------------------------------------------


def test_a_budgets_scope_follows_its_subject(staff, acme, app, alice):
    key, _secret = keys.create_api_key(app, actor=alice, name="k")
    by_tenant = services.create_budget(actor=staff, subject=acme, spend_limit_usd=Decimal("10"))
    by_app = services.create_budget(actor=staff, subject=app, tokens_per_minute=1000, period="daily")
    by_key = services.create_budget(actor=staff, subject=key, requests_per_minute=60, period="weekly")
    assert [(b.scope, b.scope_id) for b in (by_tenant, by_app, by_key)] == [
        ("tenant", acme.pk),
        ("application", app.pk),
        ("key", key.pk),
    ]
    assert all(b.owner_tenant == acme for b in (by_tenant, by_app, by_key))


@pytest.mark.parametrize(
    "limits",
    [
        {},
        {"spend_limit_usd": Decimal(0)},
        {"spend_limit_usd": Decimal("-1")},
        {"tokens_per_minute": 0},
        {"spend_limit_usd": Decimal("1e12")},
        {"spend_limit_usd": "NaN"},
    ],
)
def test_a_budget_sets_a_real_limit(staff, acme, limits):
    with pytest.raises(InvalidInput):
        services.create_budget(actor=staff, subject=acme, **limits)


def test_a_budget_period_is_daily_weekly_or_monthly(staff, acme):
    with pytest.raises(InvalidInput):
        services.create_budget(actor=staff, subject=acme, period="hourly", spend_limit_usd=Decimal(1))


# -- the gateways hear about it -------------------------------------------------------------------------


def test_each_change_bumps_the_config_version_once_it_commits(staff, django_capture_on_commit_callbacks):
    before = current_config_version()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        provider = f.provider(staff)
        services.add_key(provider, actor=staff, secret=SECRET)
    assert len(callbacks) == 2
    assert current_config_version() == before + 2
