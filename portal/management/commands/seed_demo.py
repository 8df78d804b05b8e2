"""Seed a demo: an admin, two tenants, APIs in every lifecycle state, plans, an application
with an approved subscription and a key, and the LLM gateway: an AI API with providers of
every kind on the mock provider, priced models and routes, and four prompt APIs on them
(sentiment, translation, summarization, entity extraction). Safe to run again: nothing is
duplicated."""

import os
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from llm import services as llm_services
from llm.models import Budget, Model, ModelRoute, Provider
from portal.management.demo_prompts import seed_prompt_apis
from portal.models import (
    Api,
    ApiKey,
    ApiVersion,
    Application,
    Membership,
    Plan,
    Role,
    SubscriptionState,
    Tag,
    Tenant,
    UpstreamTarget,
    VersionState,
)
from portal.models.catalog import ApiKind
from portal.services import keys, lifecycle, subscriptions

DEMO_UPSTREAM = os.environ.get("PORTICO_DEMO_UPSTREAM", "http://127.0.0.1:9001")
# One mock process (`python -m llm.mock_provider --port 9100`, in the Procfile) speaks every
# provider's wire format under its own prefix, so the demo needs no internet and no real key.
DEMO_LLM = os.environ.get("PORTICO_DEMO_LLM", "http://127.0.0.1:9100").rstrip("/")
ADMIN = ("admin", "admin@portico.local", "portico-admin")
DEVELOPER = ("dev", "dev@acme.example", "portico-dev")


def openapi(title: str, version: str, paths: dict) -> dict:
    return {"openapi": "3.0.3", "info": {"title": title, "version": version}, "paths": paths}


def get_op(summary: str, **params) -> dict:
    return {
        "get": {
            "summary": summary,
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": {"type": kind}}
                for name, kind in params.items()
            ],
            "responses": {"200": {"description": "OK"}},
        }
    }


CATALOG = [
    # slug, name, description, tags, [(version, base_path, final state, paths)], [plans]
    (
        "weather",
        "Weather",
        "Forecasts and current conditions for any city.",
        ["weather", "geo"],
        [
            ("v1", "/weather/v1", VersionState.DEPRECATED, {"/forecast": get_op("Forecast", city="string")}),
            (
                "v2",
                "/weather/v2",
                VersionState.PUBLISHED,
                {"/forecast": get_op("Forecast", city="string", days="integer"), "/now": get_op("Now", city="string")},
            ),
        ],
        [("Free", False, {"requests_per_minute": 60, "daily_quota": 1000}), ("Pro", True, {"requests_per_second": 50})],
    ),
    (
        "payments",
        "Payments",
        "Charge cards and issue refunds.",
        ["finance"],
        [("v1", "/payments/v1", VersionState.PUBLISHED, {"/charges": get_op("List charges", limit="integer")})],
        [("Standard", True, {"requests_per_second": 10, "monthly_quota": 100000})],
    ),
    (
        "inventory",
        "Legacy Inventory",
        "Stock levels from the old warehouse system.",
        ["logistics"],
        [("v1", "/inventory/v1", VersionState.RETIRED, {"/items": get_op("Items")})],
        [("Free", False, {"requests_per_minute": 30})],
    ),
    (
        "maps",
        "Maps",
        "Geocoding and routing (coming soon).",
        ["geo"],
        [("v1-beta", "/maps/v1", VersionState.DRAFT, {"/geocode": get_op("Geocode", q="string")})],
        [("Free", False, {"requests_per_minute": 60})],
    ),
]


LLM_API = ("portico-llm", "Portico LLM", "OpenAI- and Anthropic-compatible chat and embeddings over every provider.")
LLM_PROVIDERS = [
    # name, kind, path under the mock provider
    ("Mock OpenAI", "openai", "/openai/v1"),
    ("Mock Azure OpenAI", "azure-openai", "/azure"),
    ("Mock Anthropic", "anthropic", "/anthropic"),
    ("Mock Gemini", "gemini", "/gemini"),
    ("Mock Mistral", "mistral", "/mistral/v1"),
    ("Mock local server", "openai-compatible", "/compatible/v1"),
]
CHAT = ["chat", "tools", "vision", "json"]
LLM_MODELS = [
    # provider, upstream name, display name, USD per million (input, output, cached input), context, capabilities
    ("Mock OpenAI", "gpt-4o-mini", "GPT-4o mini", ("0.15", "0.60", "0.075"), 128_000, CHAT),
    ("Mock OpenAI", "text-embedding-3-small", "Embedding 3 small", ("0.02", "0", None), 8_191, ["embeddings"]),
    ("Mock Azure OpenAI", "gpt-4o-mini-deployment", "GPT-4o mini (Azure)", ("0.15", "0.60", "0.075"), 128_000, CHAT),
    ("Mock Anthropic", "claude-3-5-haiku-20241022", "Claude 3.5 Haiku", ("0.80", "4.00", "0.08"), 200_000, CHAT),
    ("Mock Gemini", "gemini-2.0-flash", "Gemini 2.0 Flash", ("0.10", "0.40", "0.025"), 1_048_576, CHAT),
    (
        "Mock Mistral",
        "mistral-small-latest",
        "Mistral Small",
        ("0.20", "0.60", None),
        32_000,
        ["chat", "tools", "json"],
    ),
    # No price: its calls record cost as unknown (never 0).
    ("Mock local server", "llama3.1:8b", "Llama 3.1 8B (local)", (None, None, None), 131_072, ["chat", "tools"]),
]
LLM_ROUTES = [
    # alias, [(provider, upstream, weight)], [fallback (provider, upstream)]
    ("gpt-4o-mini", [("Mock OpenAI", "gpt-4o-mini", 100)], [("Mock Anthropic", "claude-3-5-haiku-20241022")]),
    ("claude-haiku", [("Mock Anthropic", "claude-3-5-haiku-20241022", 100)], []),
    ("gemini-flash", [("Mock Gemini", "gemini-2.0-flash", 100)], []),
    ("mistral-small", [("Mock Mistral", "mistral-small-latest", 100)], []),
    ("azure-gpt", [("Mock Azure OpenAI", "gpt-4o-mini-deployment", 100)], []),
    ("local-llama", [("Mock local server", "llama3.1:8b", 100)], []),
    ("text-embedding-3-small", [("Mock OpenAI", "text-embedding-3-small", 100)], []),
    # An A/B split: 70 % of calls to OpenAI, 30 % to Gemini.
    ("chat-ab", [("Mock OpenAI", "gpt-4o-mini", 70), ("Mock Gemini", "gemini-2.0-flash", 30)], []),
]
DEMO_TENANT_MONTHLY_BUDGET_USD = "25"


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--new-key", action="store_true", help="Issue a fresh demo key and print it.")

    @transaction.atomic
    def handle(self, *args, **options):
        admin = self._user(*ADMIN, staff=True)
        dev = self._user(*DEVELOPER, staff=False)
        acme = self._tenant("Acme Corp", "acme", dev, Role.OWNER)
        self._tenant("Globex", "globex", admin, Role.OWNER)
        publisher = Tenant.objects.get(slug="globex")

        for slug, name, description, tags, versions, plans in CATALOG:
            api, _ = Api.objects.get_or_create(
                slug=slug, defaults={"name": name, "description": description, "owner": publisher}
            )
            api.tags.set([Tag.objects.get_or_create(name=t)[0] for t in tags])
            for plan_name, approval, limits in plans:
                Plan.objects.get_or_create(api=api, name=plan_name, defaults={"requires_approval": approval, **limits})
            for version_name, base_path, state, paths in versions:
                self._version(api, version_name, base_path, state, paths, admin)

        app, _ = Application.objects.get_or_create(
            tenant=acme, name="Acme Dashboard", defaults={"description": "Demo client", "created_by": dev}
        )
        weather = Api.objects.get(slug="weather")
        subscriptions.request_subscription(app, weather, weather.plans.get(name="Free"), actor=dev)
        payments = Api.objects.get(slug="payments")
        sub, _ = subscriptions.request_subscription(app, payments, payments.plans.get(name="Standard"), actor=dev)
        if sub.state == SubscriptionState.PENDING:
            subscriptions.approve_subscription(sub, actor=admin, reason="Demo: approved by the seed.")
        llm_api = self._llm(publisher, admin)
        subscriptions.request_subscription(app, llm_api, llm_api.plans.get(name="Free"), actor=dev)
        # Prompt APIs on the mock provider's routes; the demo application may call Sentiment.
        prompt_apis = {api.slug: api for api in seed_prompt_apis(publisher, admin)}
        sentiment = prompt_apis["sentiment"]
        subscriptions.request_subscription(app, sentiment, sentiment.plans.get(name="Free"), actor=dev)
        if not Budget.objects.filter(tenant=acme).exists():
            llm_services.create_budget(
                actor=admin, subject=acme, period="monthly", spend_limit_usd=DEMO_TENANT_MONTHLY_BUDGET_USD
            )

        self.stdout.write(self.style.SUCCESS("Demo data is ready."))
        self.stdout.write(f"  admin:     {ADMIN[0]} / {ADMIN[2]}   (Django admin at /admin/)")
        self.stdout.write(f"  developer: {DEVELOPER[0]} / {DEVELOPER[2]}   (tenant Acme Corp)")
        existing = ApiKey.objects.filter(application=app, revoked_at__isnull=True).first()
        if existing and not options["new_key"]:
            self.stdout.write(
                f"  demo key:  {existing.prefix}… (its secret was shown when it was created; "
                "run `manage.py seed_demo --new-key` for a fresh one)"
            )
        else:
            key, secret = keys.create_api_key(app, actor=dev, name="demo")
            self.stdout.write(f"  demo key:  {secret}   (shown once; only its hash is stored)")
            self.stdout.write(
                f"  try:       curl -H 'Authorization: Bearer {secret}' http://127.0.0.1:8080/weather/v2/forecast"
            )
            self.stdout.write(
                f"  LLM:       curl -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' "
                "http://127.0.0.1:8080/v1/chat/completions "
                """-d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'"""
            )
            self.stdout.write(
                f"  prompt:    curl -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' "
                """http://127.0.0.1:8080/sentiment/v1 -d '{"text": "I love this product"}'"""
            )

    def _user(self, username, email, password, *, staff):
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": email, "is_staff": staff, "is_superuser": staff}
        )
        if created:
            user.set_password(password)
            user.save()
        return user

    def _tenant(self, name, slug, owner, role):
        tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
        Membership.objects.get_or_create(user=owner, tenant=tenant, defaults={"role": role})
        return tenant

    def _version(self, api, name, base_path, final_state, paths, admin):
        version, created = ApiVersion.objects.get_or_create(
            api=api,
            version=name,
            defaults={"base_path": base_path, "openapi": openapi(api.name, name, paths)},
        )
        if created:
            UpstreamTarget.objects.create(version=version, url=DEMO_UPSTREAM)
        if version.state != VersionState.DRAFT or final_state == VersionState.DRAFT:
            return
        lifecycle.publish_version(version, actor=admin)
        if final_state == VersionState.DEPRECATED:
            lifecycle.deprecate_version(version, actor=admin, sunset_at=timezone.now() + timedelta(days=90))
        elif final_state == VersionState.RETIRED:
            lifecycle.retire_version(version, actor=admin, reason="Replaced by the new warehouse API.")

    def _llm(self, publisher, admin):
        """The AI API, its providers (every kind, on the mock provider), models and routes."""
        slug, name, description = LLM_API
        api, _ = Api.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "owner": publisher, "kind": ApiKind.AI}
        )
        api.tags.set([Tag.objects.get_or_create(name=t)[0] for t in ("ai", "llm")])
        Plan.objects.get_or_create(
            api=api, name="Free", defaults={"requires_approval": False, "requests_per_minute": 600}
        )
        version, _ = ApiVersion.objects.get_or_create(api=api, version="v1", defaults={"base_path": None})
        if version.state == VersionState.DRAFT:
            lifecycle.publish_version(version, actor=admin)

        for provider_name, kind, path in LLM_PROVIDERS:
            provider = Provider.objects.filter(name=provider_name).first()
            if provider is None:
                provider = llm_services.create_provider(
                    actor=admin, name=provider_name, kind=kind, base_url=DEMO_LLM + path
                )
            if not provider.keys.exists():
                # The mock accepts any key (except one containing "invalid").
                llm_services.add_key(provider, actor=admin, secret=f"sk-demo-{kind}-000000000001", label="demo")

        models = {}
        for provider_name, upstream, display, prices, context, capabilities in LLM_MODELS:
            provider = Provider.objects.get(name=provider_name)
            model = Model.objects.filter(provider=provider, upstream_name=upstream).first()
            if model is None:
                model = llm_services.create_model(
                    actor=admin,
                    provider=provider,
                    upstream_name=upstream,
                    display_name=display,
                    input_price=prices[0],
                    output_price=prices[1],
                    cached_input_price=prices[2],
                    context_window=context,
                    capabilities=capabilities,
                )
            models[(provider_name, upstream)] = model

        for alias, targets, fallbacks in LLM_ROUTES:
            if ModelRoute.objects.filter(alias=alias).exists():
                continue
            llm_services.create_route(
                actor=admin,
                alias=alias,
                api=api,
                targets=[llm_services.TargetSpec(models[(p, m)], weight) for p, m, weight in targets],
                fallbacks=[models[key] for key in fallbacks],
            )
        return api
