"""Provider credentials at rest: Fernet with rotation, a clear error for a bad key, and a local
key generated once, atomically, with mode 0600."""

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from llm import crypto, services
from llm.models import ProviderKey
from tests.llm import factories as f

SECRET = "sk-ant-api03-0123456789abcdefghij"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keys(settings):
    """Two fresh Fernet keys; the settings start with only the first."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.PORTICO_ENCRYPTION_KEYS = [old]
    return old, new


def test_a_secret_round_trips_and_its_ciphertext_does_not_contain_it(keys):
    token = crypto.encrypt(SECRET)
    assert SECRET not in token and crypto.decrypt(token) == SECRET
    assert crypto.encrypt(SECRET) != token  # a fresh IV each time: equal secrets do not look equal


def test_rotation_new_key_first_keeps_old_ciphertexts_readable_until_reencrypted(keys, settings):
    old, new = keys
    before = crypto.encrypt(SECRET)
    settings.PORTICO_ENCRYPTION_KEYS = [new, old]
    assert crypto.decrypt(before) == SECRET
    after = crypto.reencrypt(before)
    settings.PORTICO_ENCRYPTION_KEYS = [new]  # the old key dropped
    assert crypto.decrypt(after) == SECRET
    with pytest.raises(crypto.CredentialUnreadable):
        crypto.decrypt(before)


@pytest.mark.django_db
def test_the_reencrypt_command_moves_every_stored_key_to_the_first_key(keys, settings, staff):
    old, new = keys
    stored = services.add_key(f.provider(staff), actor=staff, secret=SECRET)
    settings.PORTICO_ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("reencrypt_provider_keys", stdout=out)
    assert "1 provider key(s) re-encrypted" in out.getvalue()
    settings.PORTICO_ENCRYPTION_KEYS = [new]
    assert crypto.decrypt(ProviderKey.objects.get(pk=stored.pk).secret_ciphertext) == SECRET


@pytest.mark.parametrize("token", ["", "not-a-token", "gAAAAA" + "A" * 80, "\u00e9\u00e9"])
def test_a_credential_no_key_decrypts_raises_credential_unreadable(keys, token):
    with pytest.raises(crypto.CredentialUnreadable):
        crypto.decrypt(token)


def test_a_malformed_key_is_a_configuration_error_that_does_not_echo_it(settings):
    settings.PORTICO_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), "hunter2-not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured) as refused:
        crypto.encrypt(SECRET)
    assert "key #2" in str(refused.value) and "hunter2" not in str(refused.value)


@pytest.mark.parametrize(("secret", "shown"), [(SECRET, "ghij"), ("ollama", ""), ("x" * 11, ""), ("y" * 12, "yyyy")])
def test_only_the_last_four_characters_of_a_long_enough_secret_are_shown(secret, shown):
    assert crypto.last4(secret) == shown


def _settings_key(var_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PORTICO_ENCRYPTION_KEY"}
    env.update(PORTICO_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="portal.settings")
    code = "from django.conf import settings; print(settings.PORTICO_ENCRYPTION_KEYS[0])"
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def test_without_the_environment_variable_concurrent_first_starts_share_one_generated_key(tmp_path):
    starts = [_settings_key(tmp_path) for _ in range(4)]
    outputs = {p.communicate(timeout=60)[0].strip() for p in starts}
    assert all(p.returncode == 0 for p in starts)
    key_file = tmp_path / "encryption_key"
    assert outputs == {key_file.read_text().strip()}
    Fernet(key_file.read_text().strip().encode())  # a valid Fernet key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".encryption_key")] == []  # no temp left
    again = _settings_key(tmp_path)
    assert again.communicate(timeout=60)[0].strip() in outputs
