"""build_ai_config: the database's LLM configuration as the gateway serves it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from llm import services
from llm.canonical import AiConfig, BudgetPolicy
from llm.models import KeyState, ProviderKey
from llm.snapshot import build_ai_config
from portal.models import ApiVersion
from portal.services import keys as api_keys
from portal.services import lifecycle
from tests.llm import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def llm_api(publisher, staff):
    return f.ai_api(publisher, staff)


@pytest.fixture
def openai(staff):
    return f.provider(staff)


@pytest.fixture
def anthropic(staff):
    return f.provider(staff, kind="anthropic", path="/anthropic")


def test_a_route_becomes_weighted_targets_and_ordered_fallbacks_with_prices_and_policy(
    staff, llm_api, openai, anthropic
):
    mini = f.model(
        staff, openai, "gpt-4o-mini", cached_input_price=Decimal("0.075"), context_window=128_000,
        capabilities=["chat", "tools"],
    )  # fmt: skip
    haiku = f.model(staff, anthropic, "claude-3-5-haiku-20241022", input_price=None, output_price=None)
    gpt4o = f.model(staff, openai, "gpt-4o")
    f.route(
        staff,
        llm_api,
        "chat-ab",
        [services.TargetSpec(mini, 70), services.TargetSpec(haiku, 30)],
        [gpt4o, haiku],
        timeout_seconds=20,
        first_byte_timeout_seconds=5,
        retries=2,
        cache_ttl_seconds=300,
        cache_nondeterministic=True,
        pii_mode="mask",
        pii_detectors=["email", "card"],
        deny_list="forbidden\n\n  /sec(ret){1,3}/  \n",
        capture=True,
        default_max_tokens=256,
    )
    route = build_ai_config().routes["chat-ab"]
    assert (route.api_id, route.state, route.version_id) == (llm_api.pk, "published", llm_api.versions.get().pk)
    assert [(w, t.upstream_model) for w, t in route.targets] == [(70, "gpt-4o-mini"), (30, "claude-3-5-haiku-20241022")]
    assert [t.upstream_model for t in route.fallbacks] == ["gpt-4o", "claude-3-5-haiku-20241022"]
    target = route.targets[0][1]
    assert (target.provider_kind, target.base_url) == ("openai", "http://127.0.0.1:9100/openai/v1")
    assert (target.prices.input, target.prices.output, target.prices.cached_input) == (
        Decimal("0.15"),
        Decimal("0.60"),
        Decimal("0.075"),
    )
    assert isinstance(target.prices.input, Decimal)
    assert (target.context_window, target.capabilities) == (128_000, frozenset({"chat", "tools"}))
    unknown = route.targets[1][1].prices
    assert (unknown.input, unknown.output, unknown.cached_input) == (None, None, None)  # unknown, never 0
    assert route.targets[1][1] is route.fallbacks[1]  # one target object per model
    assert (route.timeout_seconds, route.first_byte_timeout_seconds, route.retries) == (20, 5, 2)
    assert (route.cache_ttl, route.cache_nondeterministic, route.capture, route.default_max_tokens) == (
        300,
        True,
        True,
        256,
    )
    assert (route.pii.mode, route.pii.detectors, route.pii.deny) == (
        "mask",
        frozenset({"email", "card"}),
        ("forbidden", "/sec(ret){1,3}/"),
    )
    assert route.deprecation_headers == ()


def test_a_target_carries_its_providers_usable_keys_decrypted_by_priority(staff, llm_api, openai):
    f.route(staff, llm_api, "r", [f.model(staff, openai)])
    now = timezone.now()

    def key(secret, **extra):
        state = extra.pop("state", None)
        until = extra.pop("until", None)
        added = services.add_key(openai, actor=staff, secret=secret, **extra)
        if state:
            ProviderKey.objects.filter(pk=added.pk).update(state=state, state_until=until)
        return added.pk

    second = key("sk-second-000000000000", priority=5)
    first = key("sk-first-0000000000000", priority=1)
    tie = key("sk-tie-00000000000000", priority=5)
    rested = key("sk-rested-000000000000", priority=9, state=KeyState.RATE_LIMITED, until=now - timedelta(seconds=1))
    key("sk-resting-00000000000", state=KeyState.RATE_LIMITED, until=now + timedelta(minutes=1))
    key("sk-disabled-0000000000", state=KeyState.DISABLED)
    key("sk-exhausted-000000000", state=KeyState.EXHAUSTED)
    key("sk-expired-state-00000", state=KeyState.EXPIRED)
    expiring = key("sk-expiring-0000000000", expires_at=now + timedelta(hours=1))
    ProviderKey.objects.filter(pk=expiring).update(expires_at=now - timedelta(seconds=1))  # expired since

    pool = build_ai_config(now=now).routes["r"].targets[0][1].keys
    assert [k.id for k in pool] == [first, second, tie, rested]
    assert [k.secret for k in pool][:2] == ["sk-first-0000000000000", "sk-second-000000000000"]
    assert "sk-first" not in repr(pool)  # secrets stay out of logs and tracebacks


def test_a_key_no_configured_key_decrypts_is_left_out_not_fatal(staff, llm_api, openai, caplog):
    f.route(staff, llm_api, "r", [f.model(staff, openai)])
    good = services.add_key(openai, actor=staff, secret="sk-good-00000000000000")
    bad = services.add_key(openai, actor=staff, secret="sk-bad-000000000000000")
    ProviderKey.objects.filter(pk=bad.pk).update(secret_ciphertext="gAAAAAtampered")
    pool = build_ai_config().routes["r"].targets[0][1].keys
    assert [k.id for k in pool] == [good.pk]
    assert f"provider key {bad.pk} cannot be decrypted" in caplog.text and "sk-bad" not in caplog.text


def test_a_disabled_providers_models_leave_every_route(staff, llm_api, openai, anthropic):
    mini, haiku = f.model(staff, openai), f.model(staff, anthropic, "claude")
    f.route(staff, llm_api, "r", [mini], [haiku])
    services.update_provider(anthropic, actor=staff, enabled=False)
    route = build_ai_config().routes["r"]
    assert (len(route.targets), route.fallbacks) == (1, ())
    services.update_provider(openai, actor=staff, enabled=False)
    assert build_ai_config().routes["r"].targets == ()


def test_routes_take_their_state_from_the_apis_latest_non_draft_version(staff, publisher, openai):
    mini = f.model(staff, openai)
    draft_only = f.ai_api(publisher, staff, slug="drafty", publish=False)
    f.route(staff, draft_only, "unreleased", [mini])
    llm_api = f.ai_api(publisher, staff)
    f.route(staff, llm_api, "served", [mini])
    v1 = llm_api.versions.get()
    lifecycle.deprecate_version(v1, actor=staff, sunset_at=timezone.now() + timedelta(days=30))

    config = build_ai_config()
    assert set(config.routes) == {"served"}  # an API with only drafts serves nothing
    served = config.routes["served"]
    assert served.state == "deprecated"
    assert {name for name, _value in served.deprecation_headers} == {b"deprecation", b"sunset", b"link"}

    v2 = ApiVersion.objects.create(api=llm_api, version="v2", base_path=None)
    assert build_ai_config().routes["served"].version_id == v1.pk  # a draft does not count
    lifecycle.publish_version(v2, actor=staff)
    served = build_ai_config().routes["served"]
    assert (served.state, served.version_id, served.deprecation_headers) == ("published", v2.pk, ())
    lifecycle.retire_version(v2, actor=staff)
    assert build_ai_config().routes["served"].state == "retired"


def test_every_budget_becomes_a_policy_under_its_scope_and_id(staff, acme, app, alice):
    key, _secret = api_keys.create_api_key(app, actor=alice, name="k")
    monthly = services.create_budget(actor=staff, subject=acme, spend_limit_usd=Decimal("12.5"))
    daily = services.create_budget(actor=staff, subject=acme, spend_limit_usd=Decimal("1"), period="daily")
    per_app = services.create_budget(actor=staff, subject=app, tokens_per_minute=1000)
    per_key = services.create_budget(actor=staff, subject=key, requests_per_minute=60, period="weekly")
    budgets = build_ai_config().budgets
    assert budgets[("tenant", acme.pk)] == (
        BudgetPolicy("tenant", acme.pk, monthly.pk, "monthly", Decimal("12.5"), None, None),
        BudgetPolicy("tenant", acme.pk, daily.pk, "daily", Decimal("1"), None, None),
    )
    assert budgets[("application", app.pk)] == (BudgetPolicy("application", app.pk, per_app.pk, "monthly", None, 1000),)
    assert budgets[("key", key.pk)] == (BudgetPolicy("key", key.pk, per_key.pk, "weekly", None, None, 60),)


def test_an_empty_database_is_an_empty_config():
    assert build_ai_config() == AiConfig()


def _queries() -> int:
    with CaptureQueriesContext(connection) as queries:
        build_ai_config()
    return len(queries)


def test_the_query_count_does_not_grow_with_routes_models_keys_or_budgets(staff, publisher, acme, openai, anthropic):
    llm_api = f.ai_api(publisher, staff)
    f.route(staff, llm_api, "r0", [f.model(staff, openai, "m0")])
    services.add_key(openai, actor=staff, secret="sk-one-000000000000000")
    services.create_budget(actor=staff, subject=acme, spend_limit_usd=Decimal(1))
    few = _queries()
    other_api = f.ai_api(publisher, staff, slug="llm2")
    for n in range(1, 12):
        provider = openai if n % 2 else anthropic
        services.add_key(provider, actor=staff, secret=f"sk-more-{n:016d}")
        model = f.model(staff, provider, f"m{n}")
        f.route(staff, llm_api if n % 3 else other_api, f"r{n}", [model], [f.model(staff, provider, f"fb{n}")])
    services.create_budget(actor=staff, subject=acme, tokens_per_minute=5)
    assert len(build_ai_config().routes) == 12
    assert _queries() == few <= 5
