import pytest

from gateway.routing import BadPath, RouteTable, forwarded_remainder, parse_request_path
from gateway.snapshot import Route


def route(base_path, host="", version_id=1):
    return Route(
        api_id=1,
        api_slug="a",
        version_id=version_id,
        base_path=base_path,
        host=host,
        state="published",
        targets=(),
        load_balancing="round_robin",
        connect_timeout=1,
        read_timeout=1,
        total_timeout=1,
        retries=0,
        cache_ttl=0,
        max_request_bytes=1,
    )


def test_longest_base_path_wins_and_the_prefix_is_stripped():
    table = RouteTable([route("/weather", version_id=1), route("/weather/v2", version_id=2)])
    matched, rest = table.match("/weather/v2/forecast")
    assert matched.version_id == 2 and rest == "/forecast"
    matched, rest = table.match("/weather/v1/forecast")
    assert matched.version_id == 1 and rest == "/v1/forecast"


def test_a_base_path_matches_only_on_a_segment_boundary():
    table = RouteTable([route("/weather")])
    assert table.match("/weatherman") == (None, None)
    assert table.match("/weather")[1] == "/"


def test_host_specific_routes_win_and_others_do_not_see_them():
    table = RouteTable([route("/api", version_id=1), route("/api", host="eu.example.com", version_id=2)])
    assert table.match("/api/x", "eu.example.com")[0].version_id == 2
    assert table.match("/api/x", "us.example.com")[0].version_id == 1
    only_host = RouteTable([route("/api", host="eu.example.com")])
    assert only_host.match("/api/x", "other.example.com") == (None, None)


# -- the request path, parsed once ----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"/api/../internal/admin",
        b"/api/./echo",
        b"/api/%2e%2e/internal",
        b"/api/%2E./internal",
        b"/api/..;x/internal",
        b"/api%2F..%2Finternal",
        b"/api%2f..%2finternal",
        b"/api/a%5Cb",
        b"/api/a\\..\\b",
        b"/api/a%00b",
        b"relative/path",
        b"*",
    ],
)
def test_paths_that_could_mean_another_path_upstream_are_refused(raw):
    with pytest.raises(BadPath):
        parse_request_path(raw)


def test_encoded_letters_route_by_their_decoded_value_and_cut_by_segments():
    table = RouteTable([route("/weather", version_id=1)])
    path = parse_request_path(b"/w%65ather/fore%20cast/today")
    matched, _rest = table.match(path.decoded)
    assert matched.version_id == 1
    # The client's own encoding of what follows is kept; the cut does not shift with it.
    assert forwarded_remainder(path, matched) == b"/fore%20cast/today"


def test_the_remainder_of_a_bare_base_path_is_a_slash():
    base = route("/weather/v2")
    assert forwarded_remainder(parse_request_path(b"/weather/v2"), base) == b"/"
    assert forwarded_remainder(parse_request_path(b"/weather/v2/"), base) == b"/"
    assert forwarded_remainder(parse_request_path(b"/weather/v2/a/b"), base) == b"/a/b"


def test_dots_inside_a_segment_are_ordinary_characters():
    path = parse_request_path(b"/files/report.v2.json/..hidden")
    assert path.decoded == "/files/report.v2.json/..hidden"
