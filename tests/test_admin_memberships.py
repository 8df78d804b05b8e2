"""Membership edits on the Django admin's tenant page go through ``portal.services.tenants``:
the team keeps an owner (demoting or removing the last one is an error on the page and
nothing is saved), every change is audited, and an operator needs the membership
permissions."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from portal.models import AuditEvent, Membership, Role
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def form_for(tenant, roles: dict, *, delete=(), add=(), name: str | None = None) -> dict:
    """The tenant change form as the admin posts it: ``roles`` maps each existing membership
    to its (new) role, ``delete`` the memberships ticked for deletion, ``add`` new (user, role)."""
    rows = list(Membership.objects.filter(tenant=tenant).order_by("pk"))
    data = {
        "name": name or tenant.name,
        "slug": tenant.slug,
        "memberships-TOTAL_FORMS": len(rows) + len(add),
        "memberships-INITIAL_FORMS": len(rows),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    for i, row in enumerate(rows):
        data.update(
            {
                f"memberships-{i}-id": row.pk,
                f"memberships-{i}-tenant": tenant.pk,
                f"memberships-{i}-user": row.user_id,
                f"memberships-{i}-role": roles.get(row, row.role),
            }
        )
        if row in delete:
            data[f"memberships-{i}-DELETE"] = "on"
    for j, (user, role) in enumerate(add, start=len(rows)):
        data.update(
            {f"memberships-{j}-tenant": tenant.pk, f"memberships-{j}-user": user.pk, f"memberships-{j}-role": role}
        )
    return data


def roles_of(tenant) -> dict:
    return {m.user.username: m.role for m in Membership.objects.filter(tenant=tenant).select_related("user")}


@pytest.fixture
def page(acme):
    return reverse("admin:portal_tenant_change", args=[acme.pk])


def test_demoting_the_last_owner_in_the_admin_is_an_error_and_changes_nothing(client, staff, acme, alice, page):
    client.force_login(staff)
    before = roles_of(acme)
    owner = Membership.objects.get(tenant=acme, user=alice)
    response = client.post(page, form_for(acme, {owner: Role.ADMIN}, name="Acme renamed"), follow=True)
    assert response.status_code == 200
    assert "keeps at least one owner" in response.content.decode()
    assert roles_of(acme) == before
    acme.refresh_from_db()
    assert acme.name == "Acme"  # the whole submit was rolled back, not only the membership
    assert not AuditEvent.objects.filter(action="member.role_changed").exists()


def test_removing_the_last_owner_in_the_admin_is_refused(client, staff, acme, alice, page):
    client.force_login(staff)
    owner = Membership.objects.get(tenant=acme, user=alice)
    response = client.post(page, form_for(acme, {}, delete=[owner]), follow=True)
    assert "keeps at least one owner" in response.content.decode()
    assert Membership.objects.filter(pk=owner.pk, role=Role.OWNER).exists()


def test_handing_the_team_over_in_one_submit_works_and_is_audited(client, staff, acme, alice, bob, vera, page):
    client.force_login(staff)
    alice_m = Membership.objects.get(tenant=acme, user=alice)
    bob_m = Membership.objects.get(tenant=acme, user=bob)
    vera_m = Membership.objects.get(tenant=acme, user=vera)
    newcomer = make_user("newcomer")
    data = form_for(acme, {alice_m: Role.DEVELOPER, bob_m: Role.OWNER}, delete=[vera_m], add=[(newcomer, Role.VIEWER)])
    response = client.post(page, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert roles_of(acme) == {"alice": Role.DEVELOPER, "bob": Role.OWNER, "newcomer": Role.VIEWER}
    events = AuditEvent.objects.filter(tenant=acme, actor=staff)
    assert set(events.values_list("action", flat=True)) == {"member.role_changed", "member.removed", "member.joined"}
    assert events.filter(action="member.role_changed").count() == 2


def test_an_operator_without_the_membership_permissions_changes_no_role(client, acme, alice, bob, page):
    op = make_user("tenant-op")
    op.is_staff = True
    op.save()
    codenames = ["view_tenant", "change_tenant", "view_membership", "add_membership"]
    op.user_permissions.set(Permission.objects.filter(content_type__app_label="portal", codename__in=codenames))
    client.force_login(op)
    bob_m = Membership.objects.get(tenant=acme, user=bob)
    client.post(page, form_for(acme, {bob_m: Role.ADMIN}), follow=True)
    assert roles_of(acme)["bob"] == Role.DEVELOPER
    assert not AuditEvent.objects.filter(action="member.role_changed").exists()
