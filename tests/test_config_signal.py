import pytest
import redis as redis_lib
from django.conf import settings

from portal.models import VersionState
from portal.services import config_signal, lifecycle

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_committed_change_is_published_on_the_config_channel(draft_version, staff, redis_client):
    pubsub = redis_client.pubsub()
    pubsub.subscribe(settings.PORTICO_CONFIG_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    lifecycle.publish_version(draft_version, actor=staff)
    message = pubsub.get_message(timeout=2)
    assert message is not None and message["type"] == "message"
    assert int(message["data"]) == config_signal.current_config_version()
    pubsub.close()


def test_a_change_commits_even_when_redis_is_unreachable(draft_version, staff, monkeypatch, caplog):
    unreachable = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr(config_signal, "_client", unreachable)
    version = lifecycle.publish_version(draft_version, actor=staff)
    version.refresh_from_db()
    assert version.state == VersionState.PUBLISHED
    assert "Redis is unreachable" in caplog.text
