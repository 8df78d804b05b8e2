from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import AuditEvent, VersionState
from portal.services import lifecycle
from portal.services.config_signal import current_config_version
from portal.services.errors import IllegalTransition, InvalidInput, NotFound

pytestmark = pytest.mark.django_db(transaction=True)


def test_publish_moves_draft_to_published_and_bumps_config_version(draft_version, staff):
    before = current_config_version()
    version = lifecycle.publish_version(draft_version, actor=staff)
    assert version.state == VersionState.PUBLISHED
    assert version.published_at is not None
    assert current_config_version() == before + 1
    event = AuditEvent.objects.get(action="version.published")
    assert event.actor == staff and event.object_id == str(version.pk)


def test_deprecate_records_sunset_date(draft_version, staff):
    lifecycle.publish_version(draft_version, actor=staff)
    sunset = timezone.now() + timedelta(days=30)
    version = lifecycle.deprecate_version(draft_version, actor=staff, sunset_at=sunset, reason="v2 is out")
    assert version.state == VersionState.DEPRECATED
    assert version.sunset_at == sunset
    assert AuditEvent.objects.get(action="version.deprecated").details["reason"] == "v2 is out"


def test_deprecate_without_date_sets_a_future_sunset(draft_version, staff):
    lifecycle.publish_version(draft_version, actor=staff)
    version = lifecycle.deprecate_version(draft_version, actor=staff)
    assert version.sunset_at > timezone.now() + timedelta(days=80)


def test_deprecated_version_can_be_published_again(draft_version, staff):
    lifecycle.publish_version(draft_version, actor=staff)
    lifecycle.deprecate_version(draft_version, actor=staff)
    version = lifecycle.publish_version(draft_version, actor=staff)
    assert version.state == VersionState.PUBLISHED and version.sunset_at is None


def test_retired_is_final(draft_version, staff):
    lifecycle.publish_version(draft_version, actor=staff)
    lifecycle.retire_version(draft_version, actor=staff)
    for move in (lifecycle.publish_version, lifecycle.deprecate_version, lifecycle.retire_version):
        with pytest.raises(IllegalTransition):
            move(draft_version, actor=staff)


def test_draft_cannot_be_deprecated_or_retired(draft_version, staff):
    with pytest.raises(IllegalTransition, match="draft"):
        lifecycle.deprecate_version(draft_version, actor=staff)
    with pytest.raises(IllegalTransition):
        lifecycle.retire_version(draft_version, actor=staff)


def test_illegal_move_leaves_no_audit_event_and_no_config_bump(draft_version, staff):
    before = current_config_version()
    with pytest.raises(IllegalTransition):
        lifecycle.retire_version(draft_version, actor=staff)
    assert not AuditEvent.objects.exists()
    assert current_config_version() == before


def test_sunset_in_the_past_is_refused(draft_version, staff):
    lifecycle.publish_version(draft_version, actor=staff)
    with pytest.raises(InvalidInput):
        lifecycle.deprecate_version(draft_version, actor=staff, sunset_at=timezone.now() - timedelta(days=1))


def test_version_without_upstream_target_cannot_be_published(draft_version, staff):
    draft_version.targets.all().delete()
    with pytest.raises(InvalidInput, match="upstream target"):
        lifecycle.publish_version(draft_version, actor=staff)


def test_non_staff_cannot_change_lifecycle(draft_version, alice):
    # Alice is in no team of the API's owner: to her the version is not there.
    with pytest.raises(NotFound):
        lifecycle.publish_version(draft_version, actor=alice)


def test_unknown_target_state_is_a_clear_error(draft_version, staff):
    with pytest.raises(InvalidInput, match="Unknown target state"):
        lifecycle.set_version_state(draft_version, "archived", actor=staff)
