"""Every audit action comes from one enumeration (AuditAction): the field has it as its
choices, a service cannot write a free string, and a representative run through the
services (people, applications, keys, subscriptions, the provider's catalog, the
lifecycle, tokens) and the admin (edits and deletes) writes only its members. Admin edits
of the routable catalog are audited and published to the gateways."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.models import (
    ApiKey,
    Application,
    AuditAction,
    AuditEvent,
    Invitation,
    Plan,
    Role,
    Subscription,
    UpstreamTarget,
)
from portal.services import (
    applications,
    audit,
    keys,
    lifecycle,
    provider,
    subscriptions,
    tenants,
    tokens,
)
from portal.services.config_signal import current_config_version
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_action_field_offers_exactly_the_enumeration():
    field = AuditEvent._meta.get_field("action")
    assert field.choices == AuditAction.choices
    assert all(len(value) <= field.max_length for value in AuditAction.values)


def test_a_free_string_is_refused_and_nothing_is_written(app, alice):
    with pytest.raises(ValueError):
        audit.record(alice, "version.archived", app)  # type: ignore[arg-type]
    assert not AuditEvent.objects.exists()


def test_a_representative_flow_writes_only_members_of_the_enumeration(
    client, acme, alice, bob, staff, publisher, api, gold_plan, mailoutbox
):
    # People
    carol = make_user("carol")
    team = tenants.create_tenant("Carol's team", actor=carol)
    _invitation, token = tenants.invite_member(acme, "dora@example.com", Role.DEVELOPER, actor=alice)
    dora = make_user("dora")
    joined = tenants.accept_invitation(token, actor=dora)
    tenants.change_role(joined, Role.VIEWER, actor=alice)
    tenants.remove_member(joined, actor=alice)
    # Applications, keys, subscriptions
    app = applications.create_application(acme, actor=bob, name="Shop")
    applications.update_application(app, actor=bob, description="The web shop")
    key, _secret = keys.create_api_key(app, actor=bob, name="ci")
    rotated, _secret = keys.rotate_api_key(key, actor=bob, grace_seconds=0)
    keys.revoke_api_key(rotated, actor=bob)
    sub, _created = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    subscriptions.approve_subscription(sub, actor=staff, reason="ok")
    subscriptions.revoke_subscription(sub, actor=alice, reason="done")
    rejected, _created = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    subscriptions.reject_subscription(rejected, actor=staff, reason="not now")
    # The provider's catalog and the lifecycle
    own = provider.create_api(team, actor=carol, slug="carols", name="Carol's API")
    version = provider.create_version(
        own, actor=carol, version="v1", base_path="/carols/v1", targets=[provider.TargetSpec("http://93.184.215.14")]
    )
    provider.update_version(version, actor=carol, retries=1)
    plan = provider.create_plan(own, actor=carol, name="Basic")
    provider.update_plan(plan, actor=carol, requests_per_minute=10)
    lifecycle.publish_version(version, actor=carol)
    lifecycle.deprecate_version(version, actor=carol, sunset_at=timezone.now() + timedelta(days=1))
    lifecycle.retire_version(version, actor=carol)
    # Tokens
    pat, _secret = tokens.create_access_token(actor=bob, name="cli")
    tokens.revoke_access_token(pat, actor=bob)
    applications.delete_application(app, actor=alice)

    written = set(AuditEvent.objects.values_list("action", flat=True))
    assert written <= set(AuditAction.values), written - set(AuditAction.values)
    assert len(written) >= 25  # the flow above really wrote its events
    for event in AuditEvent.objects.all():
        event.full_clean()  # the model's own check of the choices


# --- the admin's edits ------------------------------------------------------------------


def _form_data(response) -> dict:
    """What the admin change page would post back unchanged: its form's and inlines' values."""
    data: dict = {}

    def add(form):
        for name in form.fields:
            value = form[name].value()
            if value is None or value is False:
                continue
            if value is True:
                value = "on"
            data[form.add_prefix(name)] = [str(v) for v in value] if isinstance(value, list | tuple) else str(value)

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name in formset.management_form.fields:
            data[f"{formset.prefix}-{name}"] = str(formset.management_form[name].value())
        data[f"{formset.prefix}-TOTAL_FORMS"] = str(formset.initial_form_count())  # no blank extra rows
        for form in formset.forms[: formset.initial_form_count()]:
            add(form)
    return data


@pytest.fixture
def admin_client(client, staff):
    client.force_login(staff)
    return client


def _change(admin_client, model: str, pk: int, **changes) -> None:
    url = reverse(f"admin:portal_{model}_change", args=[pk])
    data = {**_form_data(admin_client.get(url)), **changes}
    response = admin_client.post(url, data)
    assert response.status_code == 302, [
        response.context["adminform"].form.errors,
        *(inline.formset.errors for inline in response.context["inline_admin_formsets"]),
    ]


def test_admin_edits_of_apis_versions_plans_and_targets_are_audited_and_published(admin_client, api, staff):
    version = api.versions.get()
    plan = api.plans.get(name="Free")
    target = version.targets.get()
    steps = [
        ("api", api.pk, {"description": "Forecasts, hourly"}, AuditAction.API_UPDATED),
        ("apiversion", version.pk, {"retries": "2"}, AuditAction.VERSION_UPDATED),
        ("plan", plan.pk, {"requests_per_minute": "7"}, AuditAction.PLAN_UPDATED),
        ("apiversion", version.pk, {"targets-0-weight": "40"}, AuditAction.TARGET_UPDATED),
    ]
    for model, pk, changes, action in steps:
        before = current_config_version()
        _change(admin_client, model, pk, **changes)
        assert current_config_version() > before, model  # the gateways hear of it on commit
        assert AuditEvent.objects.filter(action=action, actor=staff).exists(), action
    assert Plan.objects.get(pk=plan.pk).requests_per_minute == 7
    assert UpstreamTarget.objects.get(pk=target.pk).weight == 40
    assert AuditEvent.objects.get(action=AuditAction.PLAN_UPDATED).details["changed"] == ["requests_per_minute"]


def test_admin_deletes_of_keys_applications_and_subscriptions_are_audited_and_published(
    admin_client, app, api, free_plan, bob, staff
):
    key, _secret = keys.create_api_key(app, actor=bob)
    sub, _created = subscriptions.request_subscription(app, api, free_plan, actor=bob)
    for model, obj, action in [
        ("apikey", key, AuditAction.KEY_DELETED),
        ("subscription", sub, AuditAction.SUBSCRIPTION_DELETED),
        ("application", app, AuditAction.APPLICATION_DELETED),
    ]:
        before = current_config_version()
        response = admin_client.post(reverse(f"admin:portal_{model}_delete", args=[obj.pk]), {"post": "yes"})
        assert response.status_code == 302
        assert current_config_version() > before, model
        assert AuditEvent.objects.filter(action=action, actor=staff, object_id=str(obj.pk)).count() == 1
    assert not ApiKey.objects.exists() and not Subscription.objects.exists() and not Application.objects.exists()
    assert not Invitation.objects.exists()
