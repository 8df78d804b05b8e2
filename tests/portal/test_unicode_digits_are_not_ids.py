"""Ids and numbers in query strings are ASCII digits. Python's str.isdigit() also says yes
to "²" or "³", which int() refuses: checked with isdigit() alone, such a value in the log
explorer, the usage dashboard or a REST filter was a 500. Now a clear 400, or no match."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/usage/calls/", {"api": "²"}),
        ("/usage/calls/", {"application": "1²"}),
        ("/usage/calls/", {"status": "²⁰⁰"}),
        ("/usage/calls/export.csv", {"version": "³"}),
        ("/usage/", {"version": "²"}),
    ],
)
def test_the_usage_pages_answer_a_superscript_id_with_a_form_error(client, alice, acme, url, params):
    client.force_login(alice)
    response = client.get(url, params)
    assert response.status_code == 400
    body = response.content.decode()
    assert "must be a number" in body or "A status is a code" in body


def test_a_rest_filter_with_a_superscript_id_matches_nothing(client, alice, acme):
    client.force_login(alice)
    for url in ("/api/v1/keys/", "/api/v1/subscriptions/"):
        response = client.get(url, {"application": "²"})
        assert response.status_code == 200, url
        assert response.json()["results"] == []
