"""Property-based requests from the schema against /api/v1/ on a live server.

Every answer must be documented: no 5xx, only documented status codes and content types,
bodies that match the documented schemas (the error shape included). Business refusals of
schema-valid input (an expiry in the past, say) are expected, so that check is left out.

Every operation of the schema under /api/v1/ is exercised, as a team owner who runs an API
(Alice: the consumer endpoints and the provider self-service ones under /api/v1/provider/)
and as staff (everything, the LLM management API under /api/v1/llm/ included). Random ids
and slugs mostly find nothing, so about half the cases of an operation are pointed at rows
that exist (``Known``, every other case): the team's API, version, plan and pending subscription request, the
person's application, key and token, the LLM provider, key, model, route and budget; and
request bodies naming another row (a provider, a model, an application) name a real one.

Bounded: a fixed number of generated cases per operation, about a minute for both people.
No name is resolved outside this machine: upstream URLs the generator invents are looked up
by the portal's save-time check, and only loopback names resolve here.
"""

import socket
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from llm import services as llm_services
from portal.models import Subscription
from portal.services import keys, lifecycle, provider, subscriptions
from portal.services.tokens import create_access_token
from tests.llm import factories as llm_factories

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 6
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


@pytest.fixture
def loopback_only_resolver(monkeypatch):
    """Names the generator invents must not reach a real DNS server (tests talk to loopback
    only); an unknown name fails to resolve as it would on a machine without DNS."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if host in LOOPBACK_NAMES:
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@dataclass
class Known:
    """Rows that exist, by the path an operation names them under; body fields naming rows."""

    paths: dict[str, dict[str, Any]] = field(default_factory=dict)  # path prefix -> path parameters
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # "METHOD path" -> fields

    def path_parameters(self, path: str) -> dict[str, Any] | None:
        prefix = path.split("{", 1)[0]
        return self.paths.get(prefix)


@pytest.fixture
def world(
    settings, staff, alice, bob, acme, app, api, free_plan, gold_plan, globex_app, charlie, loopback_only_resolver
):
    """Something to find behind every id: Acme (Alice owns it) runs an API with a published
    version, a draft and a plan Globex asked for; Acme's app has a key and an approved
    subscription to the Weather API; the LLM side has a provider with a key, a model, a
    route on an AI API and a budget."""
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # Alice's targets are on loopback
    api_key, _secret = keys.create_api_key(app, actor=bob, name="prod")
    consumer_sub, _ = subscriptions.request_subscription(app, api, free_plan, actor=bob)

    maps = provider.create_api(acme, actor=alice, slug="acme-maps", name="Acme Maps")
    target = provider.TargetSpec("http://127.0.0.1:9")
    reference = {"openapi": "3.0.3", "info": {"title": "Maps", "version": "1"}, "paths": {"/tiles": {}}}
    published = provider.create_version(
        maps, actor=alice, version="v1", base_path="/acme-maps/v1", targets=[target], openapi=reference
    )
    lifecycle.publish_version(published, actor=alice)
    draft = provider.create_version(maps, actor=alice, version="v2", base_path="/acme-maps/v2", targets=[target])
    maps_gold = provider.create_plan(maps, actor=alice, name="Gold", requests_per_minute=60, requires_approval=True)
    pending, _ = subscriptions.request_subscription(globex_app, maps, maps_gold, actor=charlie)
    assert isinstance(pending, Subscription)

    ai_api = llm_factories.ai_api(api.owner, staff)
    llm_provider = llm_factories.provider(staff)
    llm_model = llm_factories.model(staff, llm_provider)
    route = llm_factories.route(staff, ai_api, "gpt-4o-mini", [llm_model])
    llm_key = llm_services.add_key(llm_provider, actor=staff, secret="sk-test-0123456789abcdef", label="prod")
    budget = llm_services.create_budget(actor=staff, subject=app, requests_per_minute=60)

    def for_person(person) -> Known:
        token, _ = create_access_token(actor=person, name="a token to find")
        return Known(
            paths={
                "/api/v1/apis/": {"slug": "acme-maps", "version": "v1"},
                "/api/v1/applications/": {"id": app.pk},
                "/api/v1/keys/": {"id": api_key.pk},
                "/api/v1/llm/budgets/": {"id": budget.pk},
                "/api/v1/llm/keys/": {"id": llm_key.pk},
                "/api/v1/llm/models/": {"id": llm_model.pk},
                "/api/v1/llm/providers/": {"id": llm_provider.pk},
                "/api/v1/llm/routes/": {"id": route.pk},
                "/api/v1/provider/apis/": {"slug": maps.slug},
                "/api/v1/provider/plans/": {"id": maps_gold.pk},
                "/api/v1/provider/subscriptions/": {"id": pending.pk},
                "/api/v1/provider/versions/": {"id": draft.pk},
                "/api/v1/subscriptions/": {"id": consumer_sub.pk},
                "/api/v1/tokens/": {"id": token.pk},
                "/api/v1/versions/": {"id": published.pk},
            },
            bodies={
                "POST /api/v1/applications/": {"tenant": acme.slug},
                "POST /api/v1/provider/apis/": {"tenant": acme.slug},
                "POST /api/v1/provider/apis/{slug}/versions/": {
                    "version": "v9",
                    "base_path": "/acme-maps/v9",
                    "targets": [{"url": "http://127.0.0.1:9"}],
                },
                "PATCH /api/v1/provider/versions/{id}/": {"targets": [{"url": "http://localhost:9"}]},
                "POST /api/v1/subscriptions/": {"application": app.pk, "api": api.slug, "plan": gold_plan.pk},
                "POST /api/v1/llm/keys/": {"provider": llm_provider.pk, "secret": "sk-another-0123456789"},
                "POST /api/v1/llm/models/": {"provider": llm_provider.pk, "upstream_name": "gpt-4o"},
                "POST /api/v1/llm/routes/": {
                    "api": ai_api.slug,
                    "alias": "another",
                    "targets": [{"model": llm_model.pk}],
                    "fallbacks": [],
                    "pii_detectors": [],
                },
                "PATCH /api/v1/llm/routes/{id}/": {"fallbacks": [llm_model.pk]},
                "POST /api/v1/llm/budgets/": {"scope": "application", "subject": app.pk, "requests_per_minute": 5},
            },
        )

    return for_person


def exercise(operation, base_url: str, headers: dict, known: Known, failures: list) -> None:
    parameters = known.path_parameters(operation.path)
    body_fields = known.bodies.get(f"{operation.method.upper()} {operation.path}", {})

    drawn = [0]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        drawn[0] += 1
        if drawn[0] % 2:  # every other case, so each operation meets its rows however few cases run
            if parameters:
                case.path_parameters = {name: parameters[name] for name in case.path_parameters if name in parameters}
            if body_fields and isinstance(case.body, dict):
                case.body = {**case.body, **body_fields}
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        try:
            case.validate_response(response, checks=CHECKS)
        except (FailureGroup, AssertionError) as failure:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {failure}"[:800])

    check()


@pytest.mark.parametrize("who", ["alice", "staff"])
def test_generated_requests_get_only_documented_answers(request, who, live_server, world):
    person = request.getfixturevalue(who)
    known = world(person)
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [operation for operation in operations if operation.path.startswith("/api/v1/")]
    # Reads first, deletions last: a deleted application would leave its keys and
    # subscriptions nothing to find.
    operations.sort(key=lambda operation: {"get": 0, "delete": 2}.get(operation.method.lower(), 1))
    for operation in operations:
        # A fresh token per operation: the token endpoints may well revoke the one in use.
        headers = {"Authorization": f"Token {create_access_token(actor=person, name='schemathesis')[1]}"}
        exercise(operation, live_server.url, headers, known, failures)
    paths = {operation.path for operation in operations}
    assert {"/api/v1/provider/apis/{slug}/versions/", "/api/v1/llm/routes/{id}/"} <= paths, "the schema lost a part"
    assert len(operations) >= 70
    assert not failures, "\n\n".join(failures)
