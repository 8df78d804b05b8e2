"""Inviting people to a team, roles, and who may change them."""

import re

import pytest
from django.urls import reverse

from portal.models import AuditEvent, Membership, Role
from portal.services import tenants
from portal.services.errors import IllegalTransition, NotFound, PermissionDenied
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_owner_invites_by_email_and_the_invitee_joins_with_that_role(client, acme, alice, mailoutbox):
    client.force_login(alice)
    client.post(reverse("members"), {"email": "newbie@example.com", "role": "developer"})
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["newbie@example.com"]
    link = re.search(r"http://\S+/invitations/\S+/", mailoutbox[0].body).group(0)
    newbie = make_user("newbie")
    client.force_login(newbie)
    client.post(link)
    assert Membership.objects.get(user=newbie, tenant=acme).role == Role.DEVELOPER
    assert client.post(link).status_code == 404  # works once
    assert AuditEvent.objects.filter(action="member.joined").exists()


def test_an_invitation_is_for_its_addressee_only(acme, alice, charlie):
    _invitation, token = tenants.invite_member(acme, "someone@example.com", Role.VIEWER, actor=alice)
    with pytest.raises(PermissionDenied):
        tenants.accept_invitation(token, actor=charlie)
    with pytest.raises(NotFound):
        tenants.accept_invitation("forged-token", actor=charlie)


def test_developers_cannot_invite_and_admins_cannot_make_owners(acme, alice, bob):
    with pytest.raises(PermissionDenied):
        tenants.invite_member(acme, "x@example.com", Role.VIEWER, actor=bob)
    tenants.change_role(Membership.objects.get(user=bob, tenant=acme), Role.ADMIN, actor=alice)
    with pytest.raises(PermissionDenied, match="owner"):
        tenants.invite_member(acme, "y@example.com", Role.OWNER, actor=bob)


def test_a_team_keeps_at_least_one_owner(acme, alice):
    owner = Membership.objects.get(user=alice, tenant=acme)
    with pytest.raises(IllegalTransition):
        tenants.change_role(owner, Role.DEVELOPER, actor=alice)
    with pytest.raises(IllegalTransition):
        tenants.remove_member(owner, actor=alice)


def test_viewer_sees_the_team_but_cannot_manage_it(client, acme, vera, bob):
    client.force_login(vera)
    page = client.get(reverse("members"))
    assert page.status_code == 200 and b"Invite someone" not in page.content
    bob_membership = Membership.objects.get(user=bob, tenant=acme)
    client.post(reverse("member_update", args=[bob_membership.pk]), {"action": "remove"})
    assert Membership.objects.filter(pk=bob_membership.pk).exists()


def test_members_of_another_team_are_404(client, acme, bob, charlie, globex):
    client.force_login(charlie)
    bob_membership = Membership.objects.get(user=bob, tenant=acme)
    assert client.post(reverse("member_update", args=[bob_membership.pk]), {"action": "remove"}).status_code == 404
    assert b"bob" not in client.get(reverse("members")).content
