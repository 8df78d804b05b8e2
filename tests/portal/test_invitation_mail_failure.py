"""When the mail server does not take an invitation, the inviter reads why and the
invitation is withdrawn (its token lives only in that e-mail, so nobody could accept it):
a message, no 500, nothing pending. Tested against a real SMTP address where nothing listens."""

import pytest
from django.urls import reverse

from portal.embedded_redis import free_port
from portal.models import AuditEvent, Invitation, Role
from portal.services import tenants

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def mail_server_down(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()
    settings.EMAIL_TIMEOUT = 2


def test_an_unsent_invitation_is_withdrawn_and_the_inviter_told(client, acme, alice, mail_server_down):
    client.force_login(alice)
    response = client.post(reverse("members"), {"email": "newbie@example.com", "role": "developer"}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "could not be sent" in page and "Invitation sent" not in page
    assert not Invitation.objects.exists()
    withdrawn = AuditEvent.objects.get(action="member.invitation_withdrawn")
    assert withdrawn.details["email"] == "newbie@example.com" and withdrawn.tenant == acme


def test_the_service_raises_a_clear_error_and_keeps_nothing(acme, alice, mail_server_down):
    with pytest.raises(tenants.InvitationNotSent) as raised:
        tenants.invite_member(acme, "newbie@example.com", Role.VIEWER, actor=alice)
    assert raised.value.status == 503 and "newbie@example.com" in raised.value.message
    assert not Invitation.objects.exists()


def test_a_team_name_with_a_line_break_still_makes_one_subject_line(acme, alice, mailoutbox):
    acme.name = "Acme\r\nBcc: everyone@evil.example"
    acme.save()
    tenants.invite_member(acme, "newbie@example.com", Role.VIEWER, actor=alice)
    assert mailoutbox[0].subject == "[Portico] alice invites you to Acme Bcc: everyone@evil.example"
    assert mailoutbox[0].to == ["newbie@example.com"] and not mailoutbox[0].bcc
