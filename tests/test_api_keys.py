import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from portal import keyformat
from portal.models import ApiKey, AuditEvent
from portal.services import keys
from portal.services.config_signal import current_config_version
from portal.services.errors import IllegalTransition, InvalidInput, NotFound, PermissionDenied

pytestmark = pytest.mark.django_db(transaction=True)


def test_only_prefix_and_hash_are_stored(app, bob):
    key, secret = keys.create_api_key(app, actor=bob, name="ci")
    stored = ApiKey.objects.get(pk=key.pk)
    assert secret.startswith(stored.prefix + ".")
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {str(value) for value in stored.__dict__.values()}
    assert secret.split(".", 1)[1] not in stored.secret_hash


def test_the_secret_is_returned_once_and_cannot_be_read_back(app, bob):
    key, secret = keys.create_api_key(app, actor=bob)
    fresh = ApiKey.objects.get(pk=key.pk)
    assert not hasattr(fresh, "secret")
    assert keyformat.secret_matches(secret, fresh.secret_hash)
    assert not keyformat.secret_matches(secret + "x", fresh.secret_hash)


def test_creating_a_key_audits_and_bumps_config(app, bob):
    before = current_config_version()
    key, _ = keys.create_api_key(app, actor=bob)
    assert current_config_version() == before + 1
    assert AuditEvent.objects.get(action="key.created").details == {"prefix": key.prefix}


def test_a_key_for_an_application_of_another_tenant_is_refused(app, charlie, globex):
    with pytest.raises(NotFound):
        keys.create_api_key(app, actor=charlie)
    assert not ApiKey.objects.exists()


def test_viewer_cannot_create_keys(app, vera):
    with pytest.raises(PermissionDenied):
        keys.create_api_key(app, actor=vera)


def test_expiry_in_the_past_is_refused(app, bob):
    with pytest.raises(InvalidInput):
        keys.create_api_key(app, actor=bob, expires_at=timezone.now() - timedelta(minutes=1))


def test_rotation_issues_a_new_secret_and_keeps_the_old_one_for_the_grace_period(app, bob):
    old, old_secret = keys.create_api_key(app, actor=bob, name="prod")
    new, new_secret = keys.rotate_api_key(old, actor=bob, grace_seconds=3600)
    old.refresh_from_db()
    assert new_secret != old_secret and new.name == "prod" and new.rotated_from == old
    assert old.is_usable() and old.expires_at <= timezone.now() + timedelta(seconds=3600)
    assert not old.is_usable(timezone.now() + timedelta(seconds=3601))


def test_rotation_with_no_grace_revokes_the_old_key_at_once(app, bob):
    old, _ = keys.create_api_key(app, actor=bob)
    keys.rotate_api_key(old, actor=bob, grace_seconds=0)
    old.refresh_from_db()
    assert old.is_revoked


def test_a_key_cannot_be_rotated_twice(app, bob):
    old, _ = keys.create_api_key(app, actor=bob)
    keys.rotate_api_key(old, actor=bob, grace_seconds=60)
    with pytest.raises(IllegalTransition, match="already rotated"):
        keys.rotate_api_key(old, actor=bob)


def test_revoke_is_final(app, bob):
    key, _ = keys.create_api_key(app, actor=bob)
    keys.revoke_api_key(key, actor=bob)
    key.refresh_from_db()
    assert key.is_revoked and not key.is_usable()
    with pytest.raises(IllegalTransition):
        keys.revoke_api_key(key, actor=bob)
    with pytest.raises(IllegalTransition):
        keys.rotate_api_key(key, actor=bob)


def test_outsider_cannot_revoke(app, bob, charlie, globex):
    key, _ = keys.create_api_key(app, actor=bob)
    with pytest.raises(NotFound):
        keys.revoke_api_key(key, actor=charlie)


@pytest.mark.parametrize("presented", ["", "nodot", "pt_short.x", "xx_abcdefgh.secret", "pt_abcdefgh."])
def test_malformed_keys_have_no_prefix(presented):
    assert keyformat.prefix_of(presented) is None
