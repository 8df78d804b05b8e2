"""End-to-end harness for the LLM gateway: the mock provider and the real gateway as
processes on loopback, and AI routes built through the services.

Fixtures
--------
``mock_llm`` (module scope)
    The mock provider (``python -m llm.mock_provider``) on a free port, as a ``MockLLM``:
    ``url``, ``base_url(kind)`` (the provider base URL for a kind, as a ``Provider`` stores
    it), ``faults(fault, match=None, times=1, **params)`` (arm one; see
    ``llm.mock_provider.control.FAULTS``; ``match`` takes kind/model/key_last4/stream/
    endpoint), ``requests(kind=None, model=None)`` (the request log: path, query, headers
    with secrets cut to their last 4, body, ``conformance`` verdict, status, fault),
    ``reset()`` (faults and log), ``answer_for(request)`` (the ``Answer`` the mock gave to a
    logged request: its text, finish and token counts, to compare with what came back).

``llm_gateway`` / ``gateway`` (module scope)
    The real gateway under gunicorn with 2 workers (``tests.gateway.conftest.GatewayProcess``)
    reading the test database and the session's Redis, with the test process's encryption
    keys (``PORTICO_ENCRYPTION_KEY``) so it can decrypt the provider keys the tests store.

``ai_route`` (function scope)
    A factory: ``ai_route(targets=[Target("openai")], fallbacks=(), plan=None,
    budgets=(), subscribe=True, **route_options)`` builds, through the services, an AI API
    (kind ai, version published), a plan (``plan`` = its limits, e.g.
    ``{"requests_per_minute": 2}``), one provider per ``Target`` (its kind, pointing at
    ``mock_llm``) with its keys and its model (prices, or ``prices=None`` for an unpriced
    model), a route with a unique alias (weights, fallbacks, ``route_options`` such as
    ``cache_ttl_seconds``, ``pii_mode``, ``deny_list``, ``capture``, ``retries``,
    ``timeout_seconds``, ``first_byte_timeout_seconds``), an application subscribed
    (approved) to the API with an API key, and optional budgets (``Budget(scope=...)``); then
    waits until both gateway workers serve the new config. Returns an ``AiRoute``: ``alias``,
    ``key``, ``key_prefix``, ``openai_base_url``, ``anthropic_base_url``, ``targets`` and
    ``fallbacks`` (``BuiltTarget``: provider, model, keys, upstream name, kind), ``models``,
    ``route``, ``api``, ``plan``, ``application``, ``tenant``, ``budgets``, and clients:
    ``openai(**kw)``, ``async_openai(**kw)``, ``anthropic(**kw)`` (``max_retries=0`` unless
    given). ``ai_route.another_caller(route)`` subscribes a new application in a new tenant
    (or ``tenant=``) to the same API and returns the same route seen with its key;
    ``ai_route.add_route(route, targets=...)`` adds a route to the same API (the caller's key
    sees it too). Each call of ``ai_route`` starts from a mock with no faults and an empty log
    (first call in a test only).

``call_record`` (function scope)
    ``call_record(request_id, timeout=10)``: the call record of that request from the Redis
    stream ``portico:calls`` (waits for the gateway's flush); ``call_record.all_of(prefix)``:
    every record of an API key so far.

Tests using these are ``pytest.mark.django_db(transaction=True)`` (the gateway reads
committed rows) and ``pytest.mark.gateway``. Every test's rows are flushed after it, so a
route lives for one test: group assertions that share one.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest
import redis as redis_lib
from django.conf import settings
from django.contrib.auth import get_user_model

from gateway.calllog import records_of
from llm import services
from llm.mock_provider import anthropic_format, gemini_format, openai_format
from llm.mock_provider.answers import Answer, answer
from llm.models import Budget as BudgetRow
from llm.models import Model, ModelRoute, Provider
from portal.embedded_redis import free_port
from portal.models import Api, ApiKey, ApiVersion, Application, Membership, Plan, Role, Tenant
from portal.models.catalog import ApiKind
from portal.services import keys as key_services
from portal.services import lifecycle, subscriptions
from tests.gateway.conftest import GatewayProcess
from tests.gateway.conftest import stop as stop_process

ROOT = Path(__file__).resolve().parents[2]
CALL_STREAM = "portico:calls"
MOCK_PREFIX = {
    "openai": "/openai/v1",
    "openai-compatible": "/compatible/v1",
    "mistral": "/mistral/v1",
    "azure-openai": "/azure",
    "anthropic": "/anthropic",
    "gemini": "/gemini",
}
DEFAULT_PRICES = {"input_price": Decimal("0.15"), "output_price": Decimal("0.60")}
UNPRICED: dict[str, Decimal | None] = {}

_serial = itertools.count(1)


def unique(stem: str) -> str:
    """A name no other test (nor another pytest process on this machine) uses."""
    return f"{stem}-{next(_serial)}-{os.getpid()}"


# -- the mock provider ----------------------------------------------------------------------------


class MockLLM:
    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process
        self.http = httpx.Client(timeout=5)

    def base_url(self, kind: str) -> str:
        return self.url + MOCK_PREFIX[kind]

    def faults(self, fault: str, match: dict[str, Any] | None = None, times: int = 1, **params: Any) -> dict:
        """Arm a fault (``times=-1``: until reset) for requests matching ``match``."""
        spec = {"fault": fault, "match": match or {}, "times": times, **params}
        response = self.http.post(self.url + "/_mock/faults", json=spec)
        assert response.status_code == 201, response.text
        return response.json()

    def requests(self, kind: str | None = None, model: str | None = None) -> list[dict]:
        query = {k: v for k, v in (("kind", kind), ("model", model)) if v is not None}
        return self.http.get(self.url + "/_mock/requests", params=query).json()["requests"]

    def reset(self) -> None:
        self.http.post(self.url + "/_mock/reset").raise_for_status()

    @staticmethod
    def answer_for(request: dict) -> Answer:
        """What the mock answered to a logged chat request (its own deterministic rule)."""
        kind, body = request["kind"], request["body"]
        if kind == "anthropic":
            return answer(kind, anthropic_format.prompt(body), preface_tool_call=True)
        if kind == "gemini":
            return answer(kind, gemini_format.prompt(body))
        return answer(kind, openai_format.prompt(body))


def start_mock() -> MockLLM:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llm.mock_provider", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/_mock/health", timeout=0.5).status_code == 200:
                return MockLLM(url, process)
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"mock provider did not start: {process.stderr.read() if process.stderr else ''!r}")


@pytest.fixture(scope="module")
def mock_llm() -> Iterator[MockLLM]:
    mock = start_mock()
    yield mock
    mock.http.close()
    stop_process(mock.process)


# -- the gateway ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm_gateway(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[GatewayProcess]:
    # The gateway gets its own PORTICO_VAR_DIR, where a generated encryption key would differ
    # from ours: hand it the keys the provider credentials were encrypted with.
    process = GatewayProcess(
        settings.REDIS_URL,
        tmp_path_factory.mktemp("llm-gateway"),
        extra_env={"PORTICO_ENCRYPTION_KEY": ",".join(settings.PORTICO_ENCRYPTION_KEYS)},
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def gateway(llm_gateway: GatewayProcess) -> GatewayProcess:
    return llm_gateway


# -- AI routes ------------------------------------------------------------------------------------


@dataclass
class Target:
    """A route member to build: one provider of ``kind`` on the mock, its keys, its model."""

    kind: str = "openai"
    weight: int = 100
    prices: dict[str, Decimal | None] | None = field(default_factory=lambda: dict(DEFAULT_PRICES))
    keys: Sequence[str] | None = None  # None: one fresh key
    upstream: str | None = None  # None: a unique upstream model name
    capabilities: Sequence[str] = ("chat", "tools", "json")


@dataclass
class BuiltTarget:
    kind: str
    provider: Provider
    model: Model
    keys: list[str]
    upstream: str

    @property
    def key_last4(self) -> str:
        return self.keys[0][-4:]


@dataclass
class Budget:
    """A budget to create: ``scope`` is key, application or tenant."""

    scope: str = "key"
    period: str = "monthly"
    spend_limit_usd: Decimal | None = None
    tokens_per_minute: int | None = None
    requests_per_minute: int | None = None


@dataclass
class AiRoute:
    alias: str
    key: str
    key_prefix: str
    api_key: ApiKey
    gateway_url: str
    targets: list[BuiltTarget]
    fallbacks: list[BuiltTarget]
    route: ModelRoute
    api: Api
    plan: Plan
    application: Application
    tenant: Tenant
    owner: Any
    budgets: list[BudgetRow]

    @property
    def openai_base_url(self) -> str:
        return f"{self.gateway_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.gateway_url

    @property
    def models(self) -> list[Model]:
        return [t.model for t in self.targets + self.fallbacks]

    @property
    def target(self) -> BuiltTarget:
        return self.targets[0]

    def openai(self, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 10)
        return openai.OpenAI(base_url=self.openai_base_url, api_key=kwargs.pop("api_key", self.key), **kwargs)

    def async_openai(self, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 10)
        return openai.AsyncOpenAI(base_url=self.openai_base_url, api_key=kwargs.pop("api_key", self.key), **kwargs)

    def anthropic(self, **kwargs: Any) -> anthropic.Anthropic:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 10)
        return anthropic.Anthropic(base_url=self.anthropic_base_url, api_key=kwargs.pop("api_key", self.key), **kwargs)


class AiRouteFactory:
    def __init__(self, gateway: GatewayProcess, mock: MockLLM) -> None:
        self.gateway = gateway
        self.mock = mock
        self._mock_reset = False
        user_model = get_user_model()
        self.staff = user_model.objects.filter(username="llm-staff").first() or user_model.objects.create_user(
            "llm-staff", is_staff=True, is_superuser=True
        )

    def _target(self, spec: Target) -> BuiltTarget:
        extra = {"azure_api_version": "2024-10-21"} if spec.kind == "azure-openai" else {}
        provider = services.create_provider(
            actor=self.staff, name=unique(spec.kind), kind=spec.kind, base_url=self.mock.base_url(spec.kind), **extra
        )
        secrets = list(spec.keys) if spec.keys is not None else [f"sk-{unique('k')}-{next(_serial):04d}"]
        for priority, secret in enumerate(secrets):
            services.add_key(provider, actor=self.staff, secret=secret, priority=priority)
        upstream = spec.upstream or unique(f"{spec.kind.split('-')[0]}-model")
        model = services.create_model(
            actor=self.staff,
            provider=provider,
            upstream_name=upstream,
            capabilities=list(spec.capabilities),
            **(spec.prices or {}),
        )
        return BuiltTarget(spec.kind, provider, model, secrets, upstream)

    def _caller(
        self, api: Api, plan: Plan, tenant: Tenant | None = None
    ) -> tuple[Tenant, Any, Application, ApiKey, str]:
        owner = get_user_model().objects.create_user(unique("llm-owner"))
        if tenant is None:
            slug = unique("llm-tenant")
            tenant = Tenant.objects.create(name=slug, slug=slug)
        Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
        application = Application.objects.create(tenant=tenant, name=unique("app"))
        subscriptions.request_subscription(application, api, plan, actor=owner)
        api_key, secret = key_services.create_api_key(application, actor=owner)
        return tenant, owner, application, api_key, secret

    def _budgets(self, budgets: Sequence[Budget], api_key: ApiKey, application: Application) -> list[BudgetRow]:
        rows = []
        for spec in budgets:
            subject = {"key": api_key, "application": application, "tenant": application.tenant}[spec.scope]
            rows.append(
                services.create_budget(
                    actor=self.staff,
                    subject=subject,
                    period=spec.period,
                    spend_limit_usd=spec.spend_limit_usd,
                    tokens_per_minute=spec.tokens_per_minute,
                    requests_per_minute=spec.requests_per_minute,
                )
            )
        return rows

    def _route(self, api: Api, targets: Sequence[Target], fallbacks: Sequence[Target], options: dict) -> tuple:
        built = [self._target(t) for t in targets]
        backups = [self._target(t) for t in fallbacks]
        route = services.create_route(
            actor=self.staff,
            alias=unique("alias"),
            api=api,
            targets=[services.TargetSpec(b.model, spec.weight) for b, spec in zip(built, targets, strict=True)],
            fallbacks=[b.model for b in backups],
            **options,
        )
        return built, backups, route

    def __call__(
        self,
        targets: Sequence[Target] = (),
        *,
        fallbacks: Sequence[Target] = (),
        plan: dict[str, Any] | None = None,
        budgets: Sequence[Budget] = (),
        subscribe: bool = True,
        **route_options: Any,
    ) -> AiRoute:
        if not self._mock_reset:
            self.mock.reset()
            self._mock_reset = True
        slug = unique("llm-api")
        provider_tenant = Tenant.objects.create(name=slug, slug=slug)
        api = Api.objects.create(slug=slug, name=slug, owner=provider_tenant, kind=ApiKind.AI)
        version = ApiVersion.objects.create(api=api, version="v1", base_path=None)
        lifecycle.publish_version(version, actor=self.staff)
        plan_obj = Plan.objects.create(api=api, name="Plan", **(plan or {}))
        built, backups, route = self._route(api, list(targets) or [Target()], fallbacks, route_options)
        if subscribe:
            tenant, owner, application, api_key, secret = self._caller(api, plan_obj)
        else:
            owner = get_user_model().objects.create_user(unique("llm-owner"))
            tenant = Tenant.objects.create(name=unique("llm-tenant"), slug=unique("llm-tenant"))
            Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
            application = Application.objects.create(tenant=tenant, name=unique("app"))
            api_key, secret = key_services.create_api_key(application, actor=owner)
        rows = self._budgets(budgets, api_key, application)
        self.gateway.wait_for_config()
        return AiRoute(
            alias=route.alias,
            key=secret,
            key_prefix=api_key.prefix,
            api_key=api_key,
            gateway_url=self.gateway.url,
            targets=built,
            fallbacks=backups,
            route=route,
            api=api,
            plan=plan_obj,
            application=application,
            tenant=tenant,
            owner=owner,
            budgets=rows,
        )

    def another_caller(
        self, route: AiRoute, *, tenant: Tenant | None = None, budgets: Sequence[Budget] = ()
    ) -> AiRoute:
        """The same route called by a new application (in a new tenant unless given)."""
        tenant, owner, application, api_key, secret = self._caller(route.api, route.plan, tenant)
        rows = self._budgets(budgets, api_key, application)
        self.gateway.wait_for_config()
        return AiRoute(
            **{
                **route.__dict__,
                "key": secret,
                "key_prefix": api_key.prefix,
                "api_key": api_key,
                "application": application,
                "tenant": tenant,
                "owner": owner,
                "budgets": rows,
            }
        )

    def add_route(
        self, route: AiRoute, targets: Sequence[Target] = (), *, fallbacks: Sequence[Target] = (), **options: Any
    ) -> AiRoute:
        """Another alias on the same API, seen by the same caller."""
        built, backups, new_route = self._route(route.api, list(targets) or [Target()], fallbacks, options)
        self.gateway.wait_for_config()
        return AiRoute(
            **{**route.__dict__, "alias": new_route.alias, "route": new_route, "targets": built, "fallbacks": backups}
        )


@pytest.fixture
def ai_route(gateway: GatewayProcess, mock_llm: MockLLM, transactional_db: None) -> AiRouteFactory:
    return AiRouteFactory(gateway, mock_llm)


# -- call records ---------------------------------------------------------------------------------


class CallRecords:
    def __init__(self, client: redis_lib.Redis) -> None:
        self.client = client

    def _all(self) -> Iterator[dict]:
        for _id, fields in self.client.xrange(CALL_STREAM):
            for record in records_of(fields):
                if isinstance(record, dict):
                    yield record

    def __call__(self, request_id: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for record in self._all():
                if record.get("request_id") == request_id:
                    return record
            if time.monotonic() > deadline:
                raise AssertionError(f"no call record for request {request_id} within {timeout}s")
            time.sleep(0.05)

    def all_of(self, key_prefix: str) -> list[dict]:
        return [r for r in self._all() if r.get("key_prefix") == key_prefix]


@pytest.fixture
def call_record() -> Iterator[CallRecords]:
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    yield CallRecords(client)
    client.close()


# -- small helpers for the tests ------------------------------------------------------------------


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}


def clean(request: dict) -> bool:
    """The mock found the request it received conformant to its provider's format."""
    return request["conformance"] == {"ok": True, "problems": []}


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
