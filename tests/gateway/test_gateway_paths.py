"""Request paths: what the upstream sees is the target's own base path plus the rest of the
request path cut by segments, never a path outside it. Dot segments and encoded separators
(``%2F``, ``%5C``) or NUL are refused with 400 ``bad_path`` before anything is forwarded."""

import posixpath
from urllib.parse import unquote

import pytest
import requests

from tests.gateway.rawhttp import build_request, exchange

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

# {base} is the API's base path, e.g. /api3-1234.
REFUSED = [
    "{base}/../internal/admin",
    "{base}/%2e%2e/x",
    "{base}/%2E%2E/x",
    "{base}/.%2e/x",
    "{base}/./echo",
    "{base}/%2e/echo",
    "{base}/echo/..",
    "{base}/echo/.",
    "/elsewhere/..{base}/echo",
    "{base}/a%2Fb",
    "{base}/a%2fb",
    "{base}%2Fecho",
    "{base}%2F..%2F..%2Finternal",
    "{base}/a%5Cb",
    "{base}/a%5cb",
    "{base}/..%5C..%5Cinternal",
    "{base}/a%00b",
    "{base}/echo%00.json",
]

# Hostile ways to leave a target's base path; each is refused or stays inside it.
ESCAPES = [
    *REFUSED,
    "{base}",
    "{base}/",
    "{base}/a/../../admin",
    "{base}//../admin",
    "{base}/..",
    "{base}/%252e%252e/admin",
    "{base}?x=/../../admin",
    "{base}/..;/admin",
    "{base}/%2e%2e;/admin",
    "http://evil.example{base}/../admin",
    "http://evil.example{base}/%2e%2e/admin",
]


def upstream_count(url: str) -> int:
    return requests.get(f"{url}/count", timeout=5).json()["requests"]


def call(gateway, config, target: str):
    return exchange(
        gateway.port,
        build_request("GET", target.format(base=config.base_path), [("Authorization", f"Bearer {config.key}")]),
    )


def resolved(raw_path: str) -> str:
    """Where a path leads once decoded and its dot segments (and backslashes) are resolved."""
    path = unquote(raw_path.split("?", 1)[0]).replace("\\", "/")
    return posixpath.normpath(path) + ("/" if path.endswith("/") else "")


def test_dot_segments_and_encoded_separators_are_refused_with_400_bad_path(gateway, configure, upstream_a):
    config = configure([upstream_a])
    before = upstream_count(upstream_a)
    outcomes = {}
    for form in REFUSED:
        answer = call(gateway, config, form)
        outcomes[form] = (answer.status, answer.error_code)
    wrong = {form: outcome for form, outcome in outcomes.items() if outcome != (400, "bad_path")}
    assert not wrong, f"not refused with 400 bad_path: {wrong}"
    assert upstream_count(upstream_a) == before, "a refused request reached the upstream"


def test_a_percent_encoded_letter_in_the_base_path_routes_and_the_rest_is_cut_by_segments(
    gateway, configure, upstream_a
):
    config = configure([upstream_a])
    base = config.base_path
    encoded = "/%" + format(ord(base[1]), "02X") + base[2:]  # /api3-1 -> /%61pi3-1
    answer = call(gateway, config, encoded + "/echo?x=1")
    assert answer.status == 200, f"{encoded}/echo?x=1 was answered {answer.status}: {answer.body[:200]!r}"
    echo = answer.json()
    assert (echo["raw_path"], echo["path"]) == ("/echo?x=1", "/echo?x=1")
    lower = "/%" + format(ord(base[1]), "02x") + base[2:-1] + "%" + format(ord(base[-1]), "02x")
    # Encoded letters in the rest are the upstream's to decode: forwarded as sent or decoded.
    echo = call(gateway, config, lower + "/%65cho").json()
    assert echo["raw_path"] in ("/echo", "/%65cho")


def test_a_target_with_a_base_path_receives_it_followed_by_the_rest(gateway, configure, upstream_a):
    config = configure([f"{upstream_a}/svc"])
    base = config.base_path
    for form, expected in [
        ("{base}/echo", "/svc/echo"),
        ("{base}/a/b?c=d", "/svc/a/b?c=d"),
        ("/%" + format(ord(base[1]), "02x") + base[2:] + "/echo", "/svc/echo"),
    ]:
        answer = call(gateway, config, form)
        assert answer.status == 200, (form, answer)
        assert answer.json()["path"] == expected, form


def test_no_request_makes_the_upstream_see_a_path_outside_the_targets_base_path(gateway, configure, upstream_a):
    config = configure([f"{upstream_a}/svc"])
    escaped = {}
    for form in ESCAPES:
        answer = call(gateway, config, form)
        if answer.error_code is not None:  # the gateway's own refusal: nothing was forwarded
            continue
        if answer.status != 200:
            escaped[form] = f"forwarded, and the upstream answered {answer.status}"
            continue
        echo = answer.json()
        where = (echo["path"], echo["raw_path"], resolved(echo["raw_path"]))
        if not all(p.startswith("/svc/") for p in where):
            escaped[form] = where
    assert not escaped, f"the upstream saw a path outside /svc/: {escaped}"


def test_an_absolute_form_target_changes_neither_the_upstream_host_nor_the_path(gateway, configure, upstream_a):
    config = configure([f"{upstream_a}/svc"])
    answer = call(gateway, config, "http://evil.example{base}/echo")
    assert answer.status == 200, answer
    echo = answer.json()
    assert echo["path"] == "/svc/echo"
    hosts = [value for name, value in echo["header_list"] if name.lower() == "host"]
    assert hosts == [upstream_a.removeprefix("http://")]
    answer = call(gateway, config, "http://evil.example/elsewhere{base}/echo")
    assert answer.status == 404 and answer.error_code == "route_not_found"
