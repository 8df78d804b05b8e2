"""Identity headers: the upstream learns who calls from the gateway alone. Whatever
``X-Portico-*`` headers a client sends, in whatever case, are stripped; the gateway's own
``x-portico-application-id`` and ``x-portico-tenant-id`` arrive once each, with the real ids."""

import pytest

from tests.gateway.rawhttp import build_request, exchange

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

FORGED = [
    ("X-Portico-Tenant-Id", "999"),
    ("x-portico-application-id", "1"),
    ("X-PORTICO-Key-Prefix", "pt_evil"),
    ("X-Portico-Anything", "x"),
    ("x-portico-tenant-id", "998"),
    ("X-Portico-Application-Id", "2"),
]


def portico_pairs(echo: dict) -> list[tuple[str, str]]:
    return [(name.lower(), value) for name, value in echo["header_list"] if name.lower().startswith("x-portico-")]


def expected_pairs(config) -> list[tuple[str, str]]:
    return sorted(
        [
            ("x-portico-application-id", str(config.application.pk)),
            ("x-portico-tenant-id", str(config.application.tenant_id)),
        ]
    )


def call(gateway, config, headers, method="GET", body=b""):
    answer = exchange(
        gateway.port,
        build_request(method, f"{config.base_path}/echo", [("Authorization", f"Bearer {config.key}"), *headers], body),
    )
    assert answer.status == 200, answer
    return answer.json()


def test_client_supplied_x_portico_headers_of_any_case_are_stripped(gateway, configure, upstream_a):
    config = configure([upstream_a])
    echo = call(gateway, config, FORGED)
    assert sorted(portico_pairs(echo)) == expected_pairs(config)


def test_identity_headers_arrive_once_each_with_the_real_ids_without_forgeries(gateway, configure, upstream_a):
    config = configure([upstream_a])
    echo = call(gateway, config, [])
    assert sorted(portico_pairs(echo)) == expected_pairs(config)


def test_forged_identity_headers_with_a_body_and_x_api_key_are_stripped_too(gateway, configure, upstream_a):
    config = configure([upstream_a])
    answer = exchange(
        gateway.port,
        build_request(
            "POST",
            f"{config.base_path}/echo",
            [("X-API-Key", config.key), *FORGED, ("Content-Length", "4")],
            b"data",
        ),
    )
    assert answer.status == 200, answer
    echo = answer.json()
    assert echo["body_bytes"] == 4
    assert sorted(portico_pairs(echo)) == expected_pairs(config)


def test_an_x_portico_header_named_in_connection_does_not_remove_the_gateways_own(gateway, configure, upstream_a):
    config = configure([upstream_a])
    echo = call(
        gateway,
        config,
        [("Connection", "x-portico-tenant-id, X-Portico-Application-Id"), ("X-Portico-Tenant-Id", "999")],
    )
    assert sorted(portico_pairs(echo)) == expected_pairs(config)
