"""Demo traffic through a running gateway (``manage.py generate_traffic``), so the usage
pages, reports, alerts and Grafana have something to show.

Two parts:

- ``provision()`` (the database, through the portal's services): on top of ``seed_demo``, a
  few applications in both demo tenants with subscriptions to several APIs, one of them on a
  tiny "Trial" plan so that some calls are refused with 429, and a fresh API key per
  application. Keys are stored hashed, so the generator cannot use the seed's key: each run
  issues its own keys (named ``traffic-generator``) and revokes the previous run's, so keys
  do not pile up and no secret is ever written anywhere.
- ``TrafficGenerator.run()`` (HTTP only): a mix of successful REST calls, deprecated-version
  calls, 4xx (an unknown key, a path no API serves, a retired version), 429s, upstream errors
  (the demo upstream answers ``/status/503``), slow answers, and AI calls on the mock provider
  (chat, streamed and not, and embeddings), at a jittered rate that swells and ebbs so charts
  look alive. A fixed pool of threads sends; when the gateway is slower than the rate, calls
  are skipped (and counted), never queued without bound.
"""

from __future__ import annotations

import ipaddress
import math
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from django.contrib.auth import get_user_model
from django.db import transaction

from portal.models import Api, ApiKey, Application, Membership, Plan, Role, Subscription, SubscriptionState, Tenant
from portal.services import keys, subscriptions
from portal.services.errors import InvalidInput

KEY_NAME = "traffic-generator"
TRIAL_PLAN = "Trial (traffic generator)"
TRIAL_REQUESTS_PER_MINUTE = 5  # at any demo rate, most of "Acme Trial"'s calls get 429
# application -> (tenant slug, [(API slug, plan name)]): what the generator calls with each.
# "Acme Dashboard" is seed_demo's; its Weather subscription is on Free (60 a minute, 1,000 a
# day), which steady traffic would exhaust within minutes, so weather calls go through the
# applications on Pro (50 a second) and only "Acme Trial" is meant to be refused.
APPLICATIONS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "Acme Dashboard": ("acme", [("payments", "Standard"), ("portico-llm", "Free")]),
    "Acme Mobile": ("acme", [("weather", "Pro"), ("portico-llm", "Free")]),
    "Acme Trial": ("acme", [("weather", TRIAL_PLAN)]),
    "Globex Billing": ("globex", [("payments", "Standard"), ("weather", "Pro"), ("portico-llm", "Free")]),
}
CHAT_ALIASES = ("gpt-4o-mini", "claude-haiku", "gemini-flash", "chat-ab", "mistral-small", "local-llama")
CITIES = ("Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Perth", "Quebec", "Tunis")
PROMPTS = (
    "Summarise today's forecast for a commuter.",
    "Write a haiku about rain.",
    "List three payment failure reasons.",
    "Explain rate limits to a new developer.",
    "Draft a two-line status update about a deprecated API.",
)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url.strip())
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").rstrip("."), port


def check_gateway(url: str, configured: str) -> None:
    """The generator sends fresh, valid API keys: only to a gateway on this machine
    (loopback) or the configured one (``PORTICO_GATEWAY_URL``), never to a host a mistyped
    or planted ``--gateway`` names. InvalidInput otherwise, before any key is issued."""
    scheme, host, port = _origin(url)
    if scheme not in ("http", "https") or not host or port is None:
        raise InvalidInput("--gateway is a URL such as http://127.0.0.1:8080.")
    if (scheme, host, port) == _origin(configured):
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidInput(
            f"--gateway must be a loopback address or the configured gateway ({configured}): "
            "the generator sends it live API keys."
        )


@dataclass(frozen=True)
class Caller:
    application: str
    tenant: str
    key: str
    apis: frozenset[str]


@dataclass(frozen=True)
class Provisioned:
    callers: tuple[Caller, ...]

    def with_api(self, slug: str) -> list[Caller]:
        return [caller for caller in self.callers if slug in caller.apis and caller.application != "Acme Trial"]

    def caller(self, application: str) -> Caller:
        return next(caller for caller in self.callers if caller.application == application)


def _owner(tenant: Tenant) -> Any:
    membership = Membership.objects.filter(tenant=tenant, role=Role.OWNER).select_related("user").first()
    if membership is None:
        raise InvalidInput(f"{tenant.name} has no owner: run `manage.py seed_demo` first.")
    return membership.user


def provision() -> Provisioned:
    """The generator's applications, subscriptions and fresh keys (see the module's doc)."""
    tenants = {tenant.slug: tenant for tenant in Tenant.objects.filter(slug__in=["acme", "globex"])}
    apis = {api.slug: api for api in Api.objects.filter(slug__in=["weather", "payments", "portico-llm"])}
    admin = get_user_model().objects.filter(username="admin", is_staff=True).first()
    if len(tenants) < 2 or len(apis) < 3 or admin is None:
        raise InvalidInput("The demo is missing: run `manage.py seed_demo` first.")
    callers = []
    with transaction.atomic():
        Plan.objects.get_or_create(
            api=apis["weather"],
            name=TRIAL_PLAN,
            defaults={"requires_approval": False, "requests_per_minute": TRIAL_REQUESTS_PER_MINUTE},
        )
        for name, (tenant_slug, wanted) in APPLICATIONS.items():
            tenant = tenants[tenant_slug]
            owner = _owner(tenant)
            app, _ = Application.objects.get_or_create(
                tenant=tenant, name=name, defaults={"description": "Demo traffic", "created_by": owner}
            )
            for api_slug, plan_name in wanted:
                api = apis[api_slug]
                live = Subscription.objects.filter(application=app, api=api).exclude(
                    state__in=[SubscriptionState.REJECTED, SubscriptionState.REVOKED]
                )
                sub = live.first()
                if sub is None:
                    sub, _ = subscriptions.request_subscription(app, api, api.plans.get(name=plan_name), actor=owner)
                if sub.state == SubscriptionState.PENDING:
                    subscriptions.approve_subscription(sub, actor=admin, reason="Demo traffic generator.")
            for old in ApiKey.objects.filter(application=app, name=KEY_NAME, revoked_at__isnull=True):
                keys.revoke_api_key(old, actor=owner)
            _key, secret = keys.create_api_key(app, actor=owner, name=KEY_NAME)
            callers.append(Caller(name, tenant.name, secret, frozenset(slug for slug, _plan in wanted)))
    return Provisioned(tuple(callers))


# -- sending ------------------------------------------------------------------------------------


@dataclass
class Stats:
    """What was sent and what came back."""

    sent: int = 0
    skipped: int = 0  # not sent: every thread was busy (the gateway was slower than the rate)
    failed: int = 0  # no answer (connection refused, timeout)
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, kind: str, status: int | None) -> None:
        with self.lock:
            self.sent += 1
            self.kinds[kind] += 1
            if status is None:
                self.failed += 1
            else:
                self.statuses[status] += 1

    def classes(self) -> dict[str, int]:
        found: Counter[str] = Counter()
        for status, count in self.statuses.items():
            found[f"{status // 100}xx"] += count
        return dict(sorted(found.items()))


Call = Callable[[requests.Session], int]


class TrafficGenerator:
    def __init__(
        self,
        gateway: str,
        provisioned: Provisioned,
        *,
        rate: float = 20.0,
        concurrency: int = 8,
        seed: int | None = None,
        timeout: float = 15.0,
    ) -> None:
        if rate <= 0 or concurrency <= 0:
            raise InvalidInput("The rate and the concurrency must be positive.")
        self.gateway = gateway.rstrip("/")
        self.provisioned = provisioned
        self.rate = rate
        self.concurrency = concurrency
        self.timeout = timeout
        self.random = random.Random(seed)
        self.stats = Stats()
        self.stop = threading.Event()
        # Bounded: at most one waiting call per thread, so a slow gateway means skipped calls.
        self._queue: queue.Queue[tuple[str, Call] | None] = queue.Queue(maxsize=concurrency)
        self._local = threading.local()
        self._mix = self._build_mix()

    # -- the mix: (weight, kind, how to make the call) --------------------------------------

    def _build_mix(self) -> list[tuple[float, str, Callable[[], Call]]]:
        weather = self.provisioned.with_api("weather")
        payments = self.provisioned.with_api("payments")
        ai = self.provisioned.with_api("portico-llm")
        trial = self.provisioned.caller("Acme Trial")
        pick = self.random.choice

        def get(path: str, caller: Caller | None, key: str | None = None) -> Call:
            secret = key if key is not None else (caller.key if caller else "")
            return lambda session: self._send(session, "GET", path, secret)

        def chat(stream: bool) -> Call:
            body = {
                "model": pick(CHAT_ALIASES),
                "messages": [{"role": "user", "content": pick(PROMPTS)}],
                "max_tokens": self.random.randint(16, 120),
                "stream": stream,
            }
            return lambda session: self._send(session, "POST", "/v1/chat/completions", pick(ai).key, body, stream)

        def embed() -> Call:
            body = {"model": "text-embedding-3-small", "input": pick(PROMPTS)}
            return lambda session: self._send(session, "POST", "/v1/embeddings", pick(ai).key, body)

        return [
            (30, "rest_ok", lambda: get(f"/weather/v2/forecast?city={pick(CITIES)}&days=3", pick(weather))),
            (10, "rest_ok", lambda: get(f"/weather/v2/now?city={pick(CITIES)}", pick(weather))),
            (15, "rest_ok", lambda: get(f"/payments/v1/charges?limit={self.random.randint(1, 50)}", pick(payments))),
            (4, "deprecated", lambda: get(f"/weather/v1/forecast?city={pick(CITIES)}", pick(weather))),
            (3, "slow", lambda: get(f"/weather/v2/forecast?city={pick(CITIES)}&delay_ms=400", pick(weather))),
            (8, "rate_limited", lambda: get(f"/weather/v2/now?city={pick(CITIES)}", trial)),
            (3, "unknown_key", lambda: get("/weather/v2/now", None, "pt_unknown0.not-a-real-key")),
            (3, "no_route", lambda: get(f"/nowhere/{self.random.randint(1, 9)}", pick(weather))),
            (2, "retired", lambda: get("/inventory/v1/items", pick(weather))),
            (3, "upstream_error", lambda: get(f"/weather/v2/status/{pick((500, 502, 503))}", pick(weather))),
            (9, "ai_chat", lambda: chat(False)),
            (5, "ai_stream", lambda: chat(True)),
            (2, "ai_embeddings", embed),
        ]

    def next_call(self) -> tuple[str, Call]:
        weights = [weight for weight, _kind, _make in self._mix]
        _weight, kind, make = self.random.choices(self._mix, weights)[0]
        return kind, make()

    # -- HTTP -----------------------------------------------------------------------------------

    def _send(
        self,
        session: requests.Session,
        method: str,
        path: str,
        key: str,
        body: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with session.request(
            method, self.gateway + path, json=body, headers=headers, timeout=self.timeout, stream=stream
        ) as answer:
            for _chunk in answer.iter_content(chunk_size=4096):  # read the whole answer, as clients do
                pass
            return answer.status_code

    def _worker(self) -> None:
        session = requests.Session()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                kind, call = item
                try:
                    status: int | None = call(session)
                except requests.RequestException:
                    status = None
                self.stats.count(kind, status)
        finally:
            session.close()

    def rate_at(self, elapsed: float) -> float:
        """The target rate ``elapsed`` seconds in: a 5-minute swell of +/-35 % around ``rate``."""
        return self.rate * (1 + 0.35 * math.sin(2 * math.pi * elapsed / 300))

    def run(self, duration: float | None, on_tick: Callable[[Stats], None] | None = None) -> Stats:
        """Send until ``duration`` seconds passed (None: until ``stop`` is set). Arrivals are
        a Poisson process (exponential gaps), so the per-second counts jitter naturally."""
        threads = [
            threading.Thread(target=self._worker, name=f"traffic-{i}", daemon=True) for i in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        next_at = started
        next_tick = started + 5
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if duration is not None and now - started >= duration:
                    break
                if now >= next_tick and on_tick is not None:
                    on_tick(self.stats)
                    next_tick = now + 5
                if now < next_at:
                    self.stop.wait(min(next_at - now, 0.25))
                    continue
                next_at += self.random.expovariate(self.rate_at(now - started))
                next_at = max(next_at, now - 1)  # after a stall, no burst to catch up
                try:
                    self._queue.put_nowait(self.next_call())
                except queue.Full:
                    with self.stats.lock:
                        self.stats.skipped += 1
        finally:
            self.stop.set()
            for _thread in threads:
                self._queue.put(None)  # after what is queued: in-flight calls finish (timeout bounded)
            for thread in threads:
                thread.join(timeout=self.timeout + 5)
        return self.stats


def wait_until_served(gateway: str, provisioned: Provisioned, timeout: float = 15.0) -> None:
    """Until the gateway accepts every new key (it loads configuration changes within a
    second); a clear error when it is not running or reads another database."""
    deadline = time.monotonic() + timeout
    pending = list(provisioned.callers)
    last_error = ""
    while pending:
        caller = pending[0]
        path = "/v1/models" if "portico-llm" in caller.apis else "/weather/v2/now"
        try:
            status = requests.get(
                gateway.rstrip("/") + path, headers={"Authorization": f"Bearer {caller.key}"}, timeout=5
            ).status_code
            if status != 401:
                pending.pop(0)
                continue
            last_error = "it answers 401 to the new keys (is it reading this database and Redis?)"
        except requests.RequestException as error:
            last_error = f"it does not answer ({error.__class__.__name__})"
        if time.monotonic() > deadline:
            raise InvalidInput(f"The gateway at {gateway} is not ready: {last_error}.")
        time.sleep(0.2)
