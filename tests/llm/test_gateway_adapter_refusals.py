"""A request the inbound format accepts but the chosen provider's adapter cannot translate
(``InvalidRequest`` from ``chat_request``) is the client's 400 in its own format, not a 500."""

from __future__ import annotations

import pytest
import requests

from tests.llm.conftest import Target

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


def test_an_untranslatable_request_is_400_not_500(ai_route, gateway, mock_llm, call_record):
    route = ai_route([Target("anthropic")])
    image = {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}
    response = requests.post(
        gateway.url + "/v1/chat/completions",
        json={"model": route.alias, "messages": [{"role": "user", "content": [image]}]},
        headers={"authorization": f"Bearer {route.key}"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "messages" and "bmp" in error["message"]
    assert mock_llm.requests(kind="anthropic") == []
    assert call_record(response.headers["x-request-id"])["status"] == 400
