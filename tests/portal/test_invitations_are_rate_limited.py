"""Invitation e-mails are limited per inviting person (20 an hour, whichever team) and per
team (50 a day, whoever invites), so a signed-up account cannot mail the world. Only sent
invitations count: attempts the service refuses do not use up a team's share."""

import pytest
from django.urls import reverse

from portal.models import Invitation, Membership, Role, Tenant
from tests.conftest import make_user
from tests.portal.ratelimit_helpers import clear_counters, start_of_a_fresh_window

pytestmark = pytest.mark.django_db


def invite(client, n: int, **extra):
    return client.post(reverse("members"), {"email": f"guest{n}@example.com", "role": "viewer", **extra})


@pytest.fixture
def fresh_limits(redis_client, acme, alice):
    clear_counters(redis_client)
    start_of_a_fresh_window(str(alice.pk), 3600)
    start_of_a_fresh_window(str(acme.pk), 86400)


def test_a_person_sends_at_most_20_invitations_an_hour_in_any_team(client, acme, alice, fresh_limits, mailoutbox):
    client.force_login(alice)
    assert {invite(client, n).status_code for n in range(20)} == {302}
    refused = invite(client, 20)
    assert refused.status_code == 429
    assert "Too many invitations" in refused.content.decode()
    assert Invitation.objects.count() == len(mailoutbox) == 20
    # Another team of hers does not reset her count.
    other = Tenant.objects.create(name="Side project", slug="side")
    Membership.objects.create(user=alice, tenant=other, role=Role.OWNER)
    client.post(reverse("switch_tenant"), {"tenant": other.pk})
    assert invite(client, 21).status_code == 429
    assert not Invitation.objects.filter(tenant=other).exists()


def test_a_team_sends_at_most_50_invitations_a_day_whoever_invites(client, acme, alice, fresh_limits, mailoutbox):
    admins = [alice]
    for name in ("dana", "eve"):
        admin = make_user(name)
        Membership.objects.create(user=admin, tenant=acme, role=Role.ADMIN)
        admins.append(admin)
    sent = 0
    for admin, count in zip(admins, (20, 20, 10), strict=True):
        client.force_login(admin)
        for _ in range(count):
            assert invite(client, sent).status_code == 302
            sent += 1
    refused = invite(client, sent)  # eve has sent only 10 herself
    assert refused.status_code == 429 and "Too many invitations" in refused.content.decode()
    assert Invitation.objects.filter(tenant=acme).count() == len(mailoutbox) == 50


def test_refused_attempts_do_not_use_up_the_teams_share(client, acme, alice, vera, fresh_limits, mailoutbox):
    client.force_login(vera)  # a viewer: the service refuses her every time
    for n in range(60):
        invite(client, n)
    assert not Invitation.objects.exists() and mailoutbox == []
    client.force_login(alice)
    assert {invite(client, n).status_code for n in range(20)} == {302}
