"""Portal pages answer a refused service call one way (portal/views/service_errors.py):
NotFound is a 404, any other ServiceError the service's message (or a form error), never a
500, and no view repeats its own try/except."""

import ast
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from portal.models import Membership, Role
from portal.services import keys

pytestmark = pytest.mark.django_db

VIEWS = Path(__file__).resolve().parents[2] / "portal" / "views"


def flashed(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_an_invitation_the_service_does_not_find_is_a_404(client, alice):
    client.force_login(alice)
    response = client.post(reverse("accept_invitation", args=["no-such-token"]))
    assert response.status_code == 404


def test_revoking_a_revoked_key_is_a_message_on_the_application_page(client, app, bob):
    key, _secret = keys.create_api_key(app, actor=bob)
    keys.revoke_api_key(key, actor=bob)
    client.force_login(bob)
    response = client.post(reverse("key_revoke", args=[app.pk, key.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("application_detail", args=[app.pk])
    assert flashed(response) == ["This key is already revoked."]


def test_demoting_the_last_owner_is_a_message_not_a_500(client, acme, alice):
    client.force_login(alice)
    mine = Membership.objects.get(tenant=acme, user=alice)
    response = client.post(reverse("member_update", args=[mine.pk]), {"role": Role.ADMIN})
    assert response.status_code == 302 and response["Location"] == reverse("members")
    assert flashed(response) == ["A team keeps at least one owner; make someone else owner first."]
    assert Membership.objects.get(pk=mine.pk).role == Role.OWNER


def test_a_viewer_creating_an_application_reads_why_not(client, acme, vera):
    client.force_login(vera)
    response = client.post(reverse("applications"), {"name": "Mine", "description": ""})
    assert response.status_code == 302
    assert any("developer role" in message for message in flashed(response))


# A JSON endpoint answers its 404 in JSON.
ALLOWED = {("catalog.py", "openapi_document")}


def test_no_portal_view_catches_service_errors_itself():
    for path in VIEWS.glob("*.py"):
        if path.name == "service_errors.py":
            continue
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef) or (path.name, function.name) in ALLOWED:
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ExceptHandler) and node.type is not None:
                    names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
                    assert not names & {"ServiceError", "NotFound", "InvalidInput"}, f"{path.name}:{node.lineno}"
