"""An invitation goes only to a valid address: anything else is a form error on the team
page (never a 500, never a stored invitation, never an e-mail), and the service refuses it
too for callers that skip the form."""

import pytest
from django.urls import reverse

from portal.models import Invitation, Role
from portal.services import tenants
from portal.services.errors import InvalidInput

pytestmark = pytest.mark.django_db(transaction=True)

BAD_ADDRESSES = [
    "not an email",
    "",
    "   ",
    "newbie@example.com\r\nBcc: everyone@evil.example",
    "newbie@example.com\nSubject: hi",
    "new\rbie@example.com",
    "newbie@exa\x00mple.com",
    "a" * 290 + "@example.com",  # 302 characters
    "x@" + "a" * 64 + ".com",  # a domain label over 63 characters
    "@example.com",
    "newbie@",
]


@pytest.mark.parametrize("email", BAD_ADDRESSES)
def test_a_bad_address_is_a_form_error_and_nothing_is_sent(client, acme, alice, mailoutbox, email):
    client.force_login(alice)
    response = client.post(reverse("members"), {"email": email, "role": "developer"})
    assert response.status_code == 400
    assert response.context["form"].errors["email"]
    assert 'aria-invalid="true"' in response.content.decode()
    assert not Invitation.objects.exists() and mailoutbox == []


def test_an_unknown_role_is_a_form_error(client, acme, alice, mailoutbox):
    client.force_login(alice)
    response = client.post(reverse("members"), {"email": "newbie@example.com", "role": "emperor"})
    assert response.status_code == 400 and response.context["form"].errors["role"]
    assert not Invitation.objects.exists() and mailoutbox == []


def test_a_valid_address_is_stored_in_one_spelling(client, acme, alice, mailoutbox):
    client.force_login(alice)
    response = client.post(reverse("members"), {"email": "  NewBie@Example.COM ", "role": "viewer"})
    assert response.status_code == 302
    assert Invitation.objects.get().email == "newbie@example.com"
    assert mailoutbox[0].to == ["newbie@example.com"]


@pytest.mark.parametrize("email", BAD_ADDRESSES)
def test_the_service_refuses_a_bad_address_itself(acme, alice, mailoutbox, email):
    with pytest.raises(InvalidInput):
        tenants.invite_member(acme, email, Role.DEVELOPER, actor=alice)
    assert not Invitation.objects.exists() and mailoutbox == []


def test_inviting_a_member_again_is_a_form_error(client, acme, alice, mailoutbox):
    client.force_login(alice)
    response = client.post(reverse("members"), {"email": "BOB@example.com", "role": "viewer"})
    assert response.status_code == 400
    assert response.context["form"].errors["email"] == ["bob@example.com is already a member of Acme."]
    assert not Invitation.objects.exists() and mailoutbox == []
