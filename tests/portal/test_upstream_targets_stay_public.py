"""A team's upstream targets may only reach the public internet: no loopback, link-local,
metadata, private, unique-local or other non-global address, unless staff allowed the
network in PORTICO_UPSTREAM_ALLOWED_NETWORKS. Names are resolved and every address checked.
"""

import socket

import pytest

from portal.models import ApiVersion, UpstreamTarget
from portal.services import provider
from portal.services.errors import InvalidInput
from portal.services.provider import TargetSpec, check_upstream_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme_api(acme, alice):
    return provider.create_api(acme, actor=alice, slug="acme-maps", name="Acme Maps")


REFUSED = [
    ("http://127.0.0.1:8000", "loopback"),
    ("http://127.1.2.3", "loopback"),
    ("http://[::1]:80", "loopback"),
    ("http://localhost:8000", "loopback"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]", "link-local"),
    ("http://[fd00:ec2::254]", "metadata"),
    ("http://10.0.0.5", "private"),
    ("http://172.16.3.4", "private"),
    ("http://192.168.1.1", "private"),
    ("http://[fd12:3456::1]", "private"),
    ("http://[::ffff:127.0.0.1]", "loopback"),
    ("http://0.0.0.0:80", "not on the public internet"),
    ("http://100.64.0.1", "not on the public internet"),
    ("http://224.0.0.1", "not on the public internet"),
    ("http://2130706433", "valid URL|loopback"),  # 127.0.0.1 as one decimal number
]


@pytest.mark.parametrize("url, reason", REFUSED)
def test_a_team_cannot_target_a_non_public_address(url, reason, acme_api, alice):
    with pytest.raises(InvalidInput, match=reason):
        provider.create_version(acme_api, actor=alice, version="v1", base_path="/maps/v1", targets=[TargetSpec(url)])
    assert not ApiVersion.objects.filter(api=acme_api).exists()
    assert not UpstreamTarget.objects.exists()


def test_a_public_address_is_accepted():
    check_upstream_url("http://93.184.215.14:80")
    check_upstream_url("https://[2606:4700::1111]/")


def test_every_resolved_address_is_checked(monkeypatch):
    """A name answering one public and one private address is refused."""

    def resolve(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(InvalidInput, match="10.1.2.3"):
        check_upstream_url("http://api.example.com")


def test_an_unresolvable_host_is_refused():
    with pytest.raises(InvalidInput, match="does not resolve"):
        check_upstream_url("http://no-such-host.invalid")


def test_staff_allowed_networks_are_accepted(settings, acme_api, alice):
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = ["10.0.0.0/8", "127.0.0.1/32"]
    version = provider.create_version(
        acme_api,
        actor=alice,
        version="v1",
        base_path="/maps/v1",
        targets=[TargetSpec("http://10.0.0.5"), TargetSpec("http://127.0.0.1:9")],
    )
    assert version.targets.count() == 2
    with pytest.raises(InvalidInput, match="private"):
        provider.update_version(version, actor=alice, targets=[TargetSpec("http://192.168.0.1")])


def test_staff_targets_are_exempt(acme_api, staff):
    version = provider.create_version(
        acme_api, actor=staff, version="v1", base_path="/maps/v1", targets=[TargetSpec("http://127.0.0.1:9")]
    )
    assert version.targets.get().url == "http://127.0.0.1:9"


def test_updating_targets_is_checked_too(acme_api, alice, staff):
    version = provider.create_version(
        acme_api, actor=staff, version="v1", base_path="/maps/v1", targets=[TargetSpec("http://127.0.0.1:9")]
    )
    with pytest.raises(InvalidInput, match="link-local"):
        provider.update_version(version, actor=alice, targets=[TargetSpec("http://169.254.169.254")])
    assert version.targets.get().url == "http://127.0.0.1:9"


def test_a_team_set_target_is_marked_for_the_gateways_check_and_a_staff_one_is_not(settings, acme_api, alice, staff):
    """The mark is what makes the gateway check the address again at connect time
    (tests/gateway/test_gateway_team_targets.py): set by whoever wrote the targets last."""
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    version = provider.create_version(
        acme_api, actor=alice, version="v1", base_path="/maps/v1", targets=[TargetSpec("http://127.0.0.1:9")]
    )
    assert version.targets.get().requires_public_address is True
    provider.update_version(version, actor=staff, targets=[TargetSpec("http://127.0.0.1:10")])
    assert version.targets.get().requires_public_address is False
    provider.update_version(version, actor=alice, targets=[TargetSpec("http://127.0.0.1:11")])
    assert version.targets.get().requires_public_address is True
    staff_version = provider.create_version(
        acme_api, actor=staff, version="v2", base_path="/maps/v2", targets=[TargetSpec("http://127.0.0.1:9")]
    )
    assert staff_version.targets.get().requires_public_address is False
