"""What the gateway learned about provider keys, written back to ``llm.ProviderKey.state``.

A gateway worker that gets a 401/403 for a key stops using it and reports
``{"state": "disabled", "reason", "at"}`` in the Redis hash ``portico:llm:key_state``; a 429
makes it report ``{"state": "rate_limited", "until", "at"}`` (``llm/router.py``). Workers
forget a disabled key at their next reload, so without this the key would be retried, fail
and be reported again forever while the admin kept showing it enabled.

``sync_key_states`` (Celery beat, every 15 s) applies each report to its key and then
removes it from the hash, unless the gateway wrote a newer one meanwhile. Only rows whose
state changes are written. A key the gateway disabled gets one audit event (actor: none)
and a config change, so every worker stops using it at once; it stays disabled until staff
enable it. A rate-limit rest is written without an audit event (a busy key may rest every
minute) and without a config change, and a rest that is over is ended here too. A report
older than the key's last change (staff enabled it after the failure) is dropped.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis as redis_lib
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from llm.models import KeyState, ProviderKey
from llm.router import KEY_STATE_HASH
from portal.models import AuditAction
from portal.services import audit
from portal.services.config_signal import publish_config_change

log = logging.getLogger(__name__)

# Remove a report only if it is still the one read: a worker may have written a newer one.
_DELETE_IF_SAME = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""
# States the gateway's reports may replace; expired and exhausted keys are not in the
# snapshot, so no report about them can be current, and staff set those on purpose.
_REPLACEABLE = (KeyState.ENABLED, KeyState.RATE_LIMITED)


def _parse(raw_id: bytes, raw_value: bytes) -> tuple[int, str, datetime | None, datetime | None, str] | None:
    """(key id, state, until, at, reason) of one report, or None when it cannot be used."""
    try:
        key_id = int(raw_id)
        report = json.loads(raw_value)
        state = report["state"]
        at = datetime.fromtimestamp(float(report["at"]), UTC) if "at" in report else None
        until = datetime.fromtimestamp(float(report["until"]), UTC) if state == KeyState.RATE_LIMITED else None
        reason = str(report.get("reason", ""))[:100]
    except (ValueError, TypeError, KeyError, OverflowError, OSError):
        return None
    if state not in (KeyState.DISABLED, KeyState.RATE_LIMITED):
        return None
    return key_id, state, until, at, reason


def sync_key_states(client: Any = None) -> int:
    """Apply the gateway's key reports to the database; returns how many keys changed."""
    client = client or redis_lib.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    reports: dict[bytes, bytes] = client.hgetall(KEY_STATE_HASH)
    now = timezone.now()
    changed = 0
    disabled_any = False
    applied: list[tuple[bytes, bytes]] = []
    with transaction.atomic():
        parsed: dict[int, tuple[int, str, datetime | None, datetime | None, str]] = {}
        for raw_id, raw_value in reports.items():
            report = _parse(raw_id, raw_value)
            if report is None:
                log.warning("unusable LLM key state report %r: %r", raw_id, raw_value[:200])
            else:
                parsed[report[0]] = report
            applied.append((raw_id, raw_value))  # applied, stale or unusable: done with it
        keys = ProviderKey.objects.select_for_update().select_related("provider").filter(pk__in=list(parsed))
        for key in keys:
            _key_id, state, until, at, reason = parsed[key.pk]
            if key.state not in _REPLACEABLE or (at is not None and at < key.updated_at):
                continue
            if state == KeyState.DISABLED:
                previous = key.state
                key.state, key.state_until = KeyState.DISABLED, None
                key.save(update_fields=["state", "state_until", "updated_at"])
                audit.record(
                    None, AuditAction.LLM_KEY_DISABLED, key, previous_state=previous, reason=reason, by="gateway"
                )
                disabled_any = True
                changed += 1
            elif until is not None and until > now and (key.state, key.state_until) != (KeyState.RATE_LIMITED, until):
                key.state, key.state_until = KeyState.RATE_LIMITED, until
                key.save(update_fields=["state", "state_until", "updated_at"])
                changed += 1
        # Rests that are over, whoever set them: the key is usable (the snapshot already
        # treats it so), and the admin should say so.
        changed += ProviderKey.objects.filter(state=KeyState.RATE_LIMITED, state_until__lte=now).update(
            state=KeyState.ENABLED, state_until=None, updated_at=now
        )
        if disabled_any:
            publish_config_change("llm keys disabled by the gateway")
    for raw_id, raw_value in applied:
        client.eval(_DELETE_IF_SAME, 1, KEY_STATE_HASH, raw_id, raw_value)
    return changed
