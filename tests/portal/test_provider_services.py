"""Provider self-service: the owners and admins of the team that owns an API run it.

Acme (Alice owner, Adam admin, Bob developer, Vera viewer) owns the API; Charlie owns Globex
and must not touch it. Staff keep every power.
"""

import pytest

from portal.models import Api, AuditEvent, Membership, Plan, Role, Subscription, SubscriptionState, VersionState
from portal.services import config_signal, lifecycle, provider, subscriptions
from portal.services.errors import InvalidInput, NotFound, PermissionDenied
from portal.services.provider import TargetSpec
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

LOOPBACK_ALLOWED = ["127.0.0.0/8"]


@pytest.fixture
def adam(acme):
    user = make_user("adam")
    Membership.objects.create(user=user, tenant=acme, role=Role.ADMIN)
    return user


@pytest.fixture
def loopback_allowed(settings):
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = LOOPBACK_ALLOWED


@pytest.fixture
def acme_api(acme, alice) -> Api:
    return provider.create_api(acme, actor=alice, slug="acme-maps", name="Acme Maps")


@pytest.fixture
def acme_version(acme_api, alice, loopback_allowed):
    return provider.create_version(
        acme_api, actor=alice, version="v1", base_path="/acme-maps/v1", targets=[TargetSpec("http://127.0.0.1:9")]
    )


@pytest.fixture
def acme_gold(acme_api, alice) -> Plan:
    return provider.create_plan(acme_api, actor=alice, name="Gold", requests_per_minute=600, requires_approval=True)


@pytest.fixture
def pending(acme_version, acme_gold, alice, globex_app, charlie) -> Subscription:
    lifecycle.publish_version(acme_version, actor=alice)
    sub, _ = subscriptions.request_subscription(globex_app, acme_version.api, acme_gold, actor=charlie)
    assert sub.state == SubscriptionState.PENDING
    return sub


@pytest.mark.parametrize("who", ["alice", "adam", "staff"])
def test_owners_admins_and_staff_create_an_api_for_the_team(who, acme, adam, staff, request):
    actor = request.getfixturevalue(who)
    api = provider.create_api(acme, actor=actor, slug=f"{who}-api", name="Mine")
    assert api.owner == acme
    event = AuditEvent.objects.get(action="api.created", object_id=str(api.pk))
    assert event.actor == actor and event.tenant == acme


@pytest.mark.parametrize("who, error", [("bob", PermissionDenied), ("vera", PermissionDenied), ("charlie", NotFound)])
def test_developers_viewers_and_other_teams_cannot_create_an_api(who, error, acme, globex, request):
    with pytest.raises(error):
        provider.create_api(acme, actor=request.getfixturevalue(who), slug="nope", name="Nope")
    assert not Api.objects.filter(slug="nope").exists()
    assert not AuditEvent.objects.filter(action="api.created").exists()


def test_a_taken_slug_is_a_clear_error(acme_api, alice, acme):
    with pytest.raises(InvalidInput, match="slug"):
        provider.create_api(acme, actor=alice, slug=acme_api.slug, name="Again")


def test_a_version_keeps_its_targets_and_policy_and_is_audited(acme_api, adam, loopback_allowed):
    version = provider.create_version(
        acme_api,
        actor=adam,
        version="v2",
        base_path="/acme-maps/v2",
        targets=[TargetSpec("http://127.0.0.1:9", weight=3), TargetSpec("http://127.0.0.2:9", weight=1)],
        connect_timeout_ms=500,
        read_timeout_ms=4000,
        retries=2,
        cache_ttl_seconds=30,
        openapi={"openapi": "3.0.3", "paths": {}},
    )
    assert version.state == VersionState.DRAFT
    assert [(t.url, t.weight) for t in version.targets.all()] == [("http://127.0.0.1:9", 3), ("http://127.0.0.2:9", 1)]
    assert (version.connect_timeout_ms, version.read_timeout_ms, version.retries, version.cache_ttl_seconds) == (
        500,
        4000,
        2,
        30,
    )
    assert AuditEvent.objects.filter(action="version.created", object_id=str(version.pk), actor=adam).exists()


@pytest.mark.parametrize("who, error", [("bob", PermissionDenied), ("vera", PermissionDenied), ("charlie", NotFound)])
def test_only_the_owning_team_managers_add_versions_and_plans(who, error, acme_api, globex, request, loopback_allowed):
    actor = request.getfixturevalue(who)
    with pytest.raises(error):
        provider.create_version(
            acme_api, actor=actor, version="v9", base_path="/x/v9", targets=[TargetSpec("http://127.0.0.1:9")]
        )
    with pytest.raises(error):
        provider.create_plan(acme_api, actor=actor, name="Cheap")
    assert not acme_api.versions.exists() and not acme_api.plans.exists()


def test_bad_version_input_is_an_error_not_a_crash(acme_api, alice, loopback_allowed):
    with pytest.raises(InvalidInput, match="base path"):
        provider.create_version(acme_api, actor=alice, version="v1", base_path="/_portico/x", targets=[])
    with pytest.raises(InvalidInput, match="weight"):
        provider.create_version(
            acme_api, actor=alice, version="v1", base_path="/a/v1", targets=[TargetSpec("http://127.0.0.1:9", 0)]
        )
    with pytest.raises(InvalidInput, match="at most"):
        provider.create_version(
            acme_api, actor=alice, version="v1", base_path="/a/v1", targets=[], read_timeout_ms=10**9
        )
    with pytest.raises(InvalidInput, match="Unknown"):
        provider.create_version(acme_api, actor=alice, version="v1", base_path="/a/v1", targets=[], state="published")


def test_plans_are_created_and_updated_with_audit_and_a_config_signal(
    acme_api, alice, django_capture_on_commit_callbacks
):
    before = config_signal.current_config_version()
    with django_capture_on_commit_callbacks(execute=True):
        plan = provider.create_plan(acme_api, actor=alice, name="Free", requests_per_minute=60)
    with django_capture_on_commit_callbacks(execute=True):
        provider.update_plan(plan, actor=alice, requests_per_minute=120)
    plan.refresh_from_db()
    assert plan.requests_per_minute == 120
    assert config_signal.current_config_version() == before + 2
    actions = list(
        AuditEvent.objects.filter(object_type="portal.Plan", object_id=str(plan.pk)).values_list("action", flat=True)
    )
    assert sorted(actions) == ["plan.created", "plan.updated"]
    with pytest.raises(InvalidInput, match="no limit"):
        provider.update_plan(plan, actor=alice, requests_per_minute=0)


def test_updating_a_published_version_reaches_the_gateway(acme_version, alice, django_capture_on_commit_callbacks):
    lifecycle.publish_version(acme_version, actor=alice)
    before = config_signal.current_config_version()
    with django_capture_on_commit_callbacks(execute=True):
        provider.update_version(acme_version, actor=alice, targets=[TargetSpec("http://127.0.0.1:10", 5)], retries=3)
    assert config_signal.current_config_version() == before + 1
    acme_version.refresh_from_db()
    assert acme_version.retries == 3
    assert [(t.url, t.weight) for t in acme_version.targets.all()] == [("http://127.0.0.1:10", 5)]
    with pytest.raises(InvalidInput, match="base path"):
        provider.update_version(acme_version, actor=alice, base_path="/moved/v1")


@pytest.mark.parametrize("who", ["alice", "adam"])
def test_the_owning_team_moves_its_versions_through_the_lifecycle(who, acme_version, request):
    from datetime import timedelta

    from django.utils import timezone

    actor = request.getfixturevalue(who)
    lifecycle.publish_version(acme_version, actor=actor)
    sunset = timezone.now() + timedelta(days=30)
    version = lifecycle.deprecate_version(acme_version, actor=actor, sunset_at=sunset)
    assert version.state == VersionState.DEPRECATED and version.sunset_at == sunset
    assert lifecycle.retire_version(version, actor=actor).state == VersionState.RETIRED
    assert set(
        AuditEvent.objects.filter(object_type="portal.ApiVersion", object_id=str(version.pk), actor=actor)
        .exclude(action="version.created")
        .values_list("action", flat=True)
    ) == {"version.published", "version.deprecated", "version.retired"}


@pytest.mark.parametrize("who, error", [("bob", PermissionDenied), ("vera", PermissionDenied), ("charlie", NotFound)])
def test_others_cannot_move_the_lifecycle(who, error, acme_version, globex, request):
    with pytest.raises(error):
        lifecycle.publish_version(acme_version, actor=request.getfixturevalue(who))
    acme_version.refresh_from_db()
    assert acme_version.state == VersionState.DRAFT


@pytest.mark.parametrize("who", ["alice", "adam", "staff"])
def test_the_owning_team_approves_requests_to_its_api(who, pending, request, staff):
    actor = request.getfixturevalue(who)
    sub = subscriptions.approve_subscription(pending, actor=actor, reason="Welcome")
    assert sub.state == SubscriptionState.APPROVED and sub.decided_by == actor
    assert AuditEvent.objects.filter(action="subscription.approved", object_id=str(sub.pk), actor=actor).exists()


@pytest.mark.parametrize("who, error", [("bob", PermissionDenied), ("vera", PermissionDenied), ("charlie", NotFound)])
def test_developers_viewers_and_the_requesting_team_cannot_decide(who, error, pending, request):
    actor = request.getfixturevalue(who)
    with pytest.raises(error):
        subscriptions.approve_subscription(pending, actor=actor)
    with pytest.raises(error):
        subscriptions.reject_subscription(pending, actor=actor, reason="no")
    pending.refresh_from_db()
    assert pending.state == SubscriptionState.PENDING


def test_an_owner_rejects_with_a_reason(pending, alice):
    with pytest.raises(InvalidInput):
        subscriptions.reject_subscription(pending, actor=alice, reason="  ")
    sub = subscriptions.reject_subscription(pending, actor=alice, reason="Not a partner")
    assert sub.state == SubscriptionState.REJECTED and sub.reason == "Not a partner"


def test_subscription_requests_lists_only_the_managed_apis(pending, alice, bob, charlie):
    assert list(provider.subscription_requests(alice)) == [pending]
    assert list(provider.subscription_requests(bob)) == []
    assert list(provider.subscription_requests(charlie)) == []
    assert list(provider.managed_apis(charlie)) == []


LAUGHS = b"""openapi: 3.0.3
paths: {}
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


@pytest.mark.parametrize(
    "raw, message",
    [
        (LAUGHS, "aliases"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply|neither JSON nor YAML|JSON cannot"),
        (b"!!python/object/apply:os.system ['true']", "neither JSON nor YAML"),
        (b'{"openapi": 3.0, "paths": {}}', "OpenAPI 3"),
        (b'{"openapi": "3.0.0", "paths": {"/\\u0000": {}}}', "NUL"),
    ],
)
def test_hostile_openapi_documents_are_refused(raw, message):
    with pytest.raises(InvalidInput, match=message):
        provider.parse_openapi(raw)


def test_a_yaml_document_is_stored_as_json():
    document = provider.parse_openapi(b"openapi: 3.1.0\ninfo: {title: T, version: 2024-01-01}\npaths: {}\n")
    assert document == {"openapi": "3.1.0", "info": {"title": "T", "version": "2024-01-01"}, "paths": {}}
