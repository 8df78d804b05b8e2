"""A team's base path may neither extend nor enclose another team's: the gateway routes by
the longest segment prefix, so a nested path would take calls meant for the other API."""

import pytest

from portal.models import ApiVersion, VersionState
from portal.services import lifecycle, provider
from portal.services.errors import InvalidInput
from portal.services.provider import TargetSpec

pytestmark = pytest.mark.django_db

TARGET = [TargetSpec("http://127.0.0.1:9")]


@pytest.fixture(autouse=True)
def loopback_allowed(settings):
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def acme_maps(acme, alice):
    api = provider.create_api(acme, actor=alice, slug="maps", name="Maps")
    provider.create_version(api, actor=alice, version="v1", base_path="/maps/v1", targets=TARGET)
    return api


@pytest.fixture
def globex_api(globex, charlie):
    return provider.create_api(globex, actor=charlie, slug="globex-geo", name="Globex Geo")


@pytest.mark.parametrize("path", ["/maps/v1/tiles", "/maps/v1/a/b", "/maps"])
def test_another_team_cannot_take_a_path_inside_or_around_a_teams_base_path(acme_maps, globex_api, charlie, path):
    with pytest.raises(InvalidInput, match="another team"):
        provider.create_version(globex_api, actor=charlie, version="v1", base_path=path, targets=TARGET)
    assert not ApiVersion.objects.filter(api=globex_api).exists()


@pytest.mark.parametrize("path", ["/maps/v10", "/maps-v1", "/map/v1/tiles", "/other/maps/v1"])
def test_paths_that_only_share_characters_are_not_overlaps(acme_maps, globex_api, charlie, path):
    version = provider.create_version(globex_api, actor=charlie, version="v1", base_path=path, targets=TARGET)
    assert version.base_path == path


def test_a_team_may_nest_its_own_base_paths(acme_maps, alice):
    version = provider.create_version(acme_maps, actor=alice, version="beta", base_path="/maps/v1/beta", targets=TARGET)
    assert version.base_path == "/maps/v1/beta"


def test_a_drafts_base_path_cannot_move_under_another_teams(acme_maps, globex_api, charlie):
    draft = provider.create_version(globex_api, actor=charlie, version="v1", base_path="/geo/v1", targets=TARGET)
    with pytest.raises(InvalidInput, match="another team"):
        provider.update_version(draft, actor=charlie, base_path="/maps/v1/geo")
    draft.refresh_from_db()
    assert draft.base_path == "/geo/v1"


def test_publishing_checks_again_for_drafts_saved_side_by_side(acme_maps, globex_api, charlie):
    # Two drafts saved at once both passed their check; whichever is published second is refused.
    intruder = ApiVersion.objects.create(api=globex_api, version="v1", base_path="/maps/v1/tiles")
    with pytest.raises(InvalidInput, match="another team"):
        lifecycle.publish_version(intruder, actor=charlie)
    intruder.refresh_from_db()
    assert intruder.state == VersionState.DRAFT
