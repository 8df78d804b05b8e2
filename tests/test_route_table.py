from gateway.routing import RouteTable
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
