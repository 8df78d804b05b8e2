"""Alert rules: who may make them, and their evaluation every minute.

A rule belongs to a tenant (its owners and admins make, change and delete it; its members
read it) or, with no tenant, to the platform (staff only). Anyone else gets NotFound, never
a hint that a rule exists.

``evaluate_alerts(now)`` (Celery beat every minute, ``manage.py evaluate_alerts``) reads the
minute rollups of each enabled rule's window, the last ``window_minutes`` complete minutes
ending ``PORTICO_ALERT_DELAY_SECONDS`` before ``now`` (ingest and the minute rollup need that
long to fold a minute in, so a minute is never judged half counted):

- ``error_rate``: errors (4xx and 5xx) per request, in percent; no requests, no value;
- ``p95_latency_ms``: the 95th percentile of the merged latency histogram;
- ``traffic_drop`` / ``traffic_spike``: requests in the window against the mean of the
  ``BASELINE_WINDOWS`` windows of the same length before it, as a percent below / above
  it; no value while that baseline is zero (no traffic to compare with);
- ``budget_use``: what the gateway counted against the rule's LLM budget this period
  (``llm.budgets.spend_in_period``), in percent of its spend limit.

The condition holds when the value is at least the threshold. A rule whose condition holds
and that has no firing event opens one (state firing) and notifies; a firing event whose
condition no longer holds (or has no value) is resolved and notifies. Nothing else
notifies: a rule that stays firing is silent. Notifications are e-mail to the tenant's
owners (staff for platform rules), sent on commit, and a webhook delivery queued in the
same transaction (``analytics.webhooks``).
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from analytics.models import AlertEvent, AlertMetric, AlertRule, AlertState, Granularity, Rollup, WebhookDelivery
from analytics.rollups import Totals
from analytics.webhooks import check_webhook_url
from portal.models import Api, AuditAction, Role, Tenant
from portal.services.access import require_role
from portal.services.catalog import visible_apis
from portal.services.errors import InvalidInput, NotFound
from portal.services.notifications import notify_tenant_owners

log = logging.getLogger(__name__)

MAX_WINDOW_MINUTES = 1440
BASELINE_WINDOWS = 4
MAX_RULES_PER_TENANT = 100
MAX_NAME = 100
HISTORY_LIMIT = 50


def _is_staff(actor: Any) -> bool:
    return bool(getattr(actor, "is_authenticated", False) and actor.is_staff)


def _require(actor: Any, tenant: Tenant | None, minimum: str) -> None:
    if _is_staff(actor):
        return
    if tenant is None:
        raise NotFound("No such object.")
    require_role(actor, tenant, minimum)


# -- reading ----------------------------------------------------------------------------------


def rules_for(actor: Any, tenant: Tenant | None) -> QuerySet[AlertRule]:
    """The rules of ``tenant`` (None: the platform's) if ``actor`` may read them."""
    _require(actor, tenant, Role.VIEWER)
    return AlertRule.objects.filter(**_scope(tenant)).select_related("tenant", "api", "budget")


def get_rule(actor: Any, rule_id: Any, *, minimum: str = Role.VIEWER) -> AlertRule:
    """One rule by id if ``actor`` has ``minimum`` in its tenant (staff: any); NotFound
    otherwise, also for a malformed id."""
    try:
        rule = AlertRule.objects.select_related("tenant").get(pk=int(rule_id))
    except (AlertRule.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound("No such object.") from None
    _require(actor, rule.tenant, minimum)
    return rule


def events_for(actor: Any, rule_id: Any) -> QuerySet[AlertEvent]:
    """The history of a rule: its events, newest first."""
    return get_rule(actor, rule_id).events.all()


# -- changing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    """What a person sets on a rule (forms and the API parse into this; every field checked here)."""

    name: str
    metric: str
    threshold: Any
    window_minutes: Any = 5
    api_id: Any = None
    budget_id: Any = None
    notify_email: bool = True
    webhook_url: str = ""
    enabled: bool = True


def _number(value: Any, what: str, *, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a number.")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"{what} must be a number.") from None
    if not (low <= number <= high):  # also refuses NaN
        raise InvalidInput(f"{what} must be between {low:g} and {high:g}.")
    return number


def _clean(spec: RuleSpec, tenant: Tenant | None) -> dict[str, Any]:
    name = " ".join(str(spec.name or "").split())
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"A rule needs a name of 1 to {MAX_NAME} characters.")
    if spec.metric not in AlertMetric.values:
        raise InvalidInput(f"The metric is one of: {', '.join(AlertMetric.values)}.")
    if spec.metric == AlertMetric.P95_LATENCY_MS:
        threshold = _number(spec.threshold, "The threshold", low=0, high=600_000)
    elif spec.metric == AlertMetric.TRAFFIC_SPIKE:
        threshold = _number(spec.threshold, "The threshold", low=0, high=1_000_000)
    else:
        threshold = _number(spec.threshold, "The threshold", low=0, high=100 if spec.metric != "budget_use" else 10_000)
    window = _number(spec.window_minutes, "The window", low=1, high=MAX_WINDOW_MINUTES)
    if window != int(window):
        raise InvalidInput("The window is a whole number of minutes.")
    api = None
    if spec.api_id not in (None, ""):
        try:
            api_pk = int(spec.api_id)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput("No such API.") from None
        candidates = Api.objects.all()
        if tenant is not None:  # the catalog it sees, and its own APIs
            candidates = candidates.filter(Q(pk__in=visible_apis(tenant).values("pk")) | Q(owner=tenant))
        api = candidates.filter(pk=api_pk).first() if -(2**63) < api_pk < 2**63 else None
        if api is None:
            raise InvalidInput("No such API.")
    budget = None
    if spec.metric == AlertMetric.BUDGET_USE:
        from llm.models import Budget

        try:
            budget = Budget.objects.get(pk=int(spec.budget_id), spend_limit_usd__isnull=False)
        except (Budget.DoesNotExist, ValueError, TypeError, OverflowError):
            budget = None
        if budget is None or (
            tenant is not None and (budget.owner_tenant is None or budget.owner_tenant.pk != tenant.pk)
        ):
            raise InvalidInput("A budget-use rule names one of the team's budgets that has a spend limit.")
    elif spec.budget_id not in (None, ""):
        raise InvalidInput("Only a budget-use rule names a budget.")
    if spec.webhook_url is not None and not isinstance(spec.webhook_url, str):
        raise InvalidInput("A webhook URL is text.")
    url = (spec.webhook_url or "").strip()
    if url:
        check_webhook_url(url)
    if not url and not spec.notify_email:
        raise InvalidInput("A rule notifies by e-mail, by webhook or both.")
    return {
        "name": name,
        "metric": spec.metric,
        "threshold": threshold,
        "window_minutes": int(window),
        "api": api,
        "budget": budget,
        "notify_email": bool(spec.notify_email),
        "webhook_url": url,
        "enabled": bool(spec.enabled),
    }


def create_rule(actor: Any, tenant: Tenant | None, spec: RuleSpec) -> tuple[AlertRule, str]:
    """A new rule for ``tenant`` (None: the platform, staff only), made by an owner or admin.
    Returns it and its webhook secret, which is shown this once."""
    _require(actor, tenant, Role.ADMIN)
    fields = _clean(spec, tenant)
    with transaction.atomic():
        if tenant is not None and AlertRule.objects.filter(tenant=tenant).count() >= MAX_RULES_PER_TENANT:
            raise InvalidInput(f"A team has at most {MAX_RULES_PER_TENANT} alert rules.")
        secret = "whsec_" + secrets.token_urlsafe(32)
        rule = AlertRule.objects.create(
            tenant=tenant, webhook_secret=secret, created_by=actor if getattr(actor, "pk", None) else None, **fields
        )
        _audit(actor, AuditAction.ALERT_RULE_CREATED, rule)
    return rule, secret


def update_rule(actor: Any, rule_id: Any, spec: RuleSpec) -> AlertRule:
    """Change every field of a rule (owners and admins of its tenant; staff)."""
    rule = get_rule(actor, rule_id, minimum=Role.ADMIN)
    fields = _clean(spec, rule.tenant)
    with transaction.atomic():
        for name, value in fields.items():
            setattr(rule, name, value)
        rule.save()
        if not rule.enabled:  # a rule switched off is not judged any more: its episode ends, silently
            now = timezone.now()
            for event in AlertEvent.objects.select_for_update().filter(rule=rule, state=AlertState.FIRING):
                event.state, event.resolved_at = AlertState.RESOLVED, now
                event.history = [*event.history, {"at": now.isoformat(), "state": "disabled", "value": None}]
                event.save(update_fields=["state", "resolved_at", "history"])
        _audit(actor, AuditAction.ALERT_RULE_UPDATED, rule)
    return rule


def renew_webhook_secret(actor: Any, rule_id: Any) -> str:
    """A new webhook secret for the rule, shown this once; the old one stops at once."""
    rule = get_rule(actor, rule_id, minimum=Role.ADMIN)
    secret = "whsec_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        rule.webhook_secret = secret
        rule.save(update_fields=["webhook_secret", "updated_at"])
        _audit(actor, AuditAction.ALERT_RULE_SECRET_RENEWED, rule)
    return secret


def delete_rule(actor: Any, rule_id: Any) -> None:
    """Delete a rule, its events and pending deliveries (owners and admins; staff)."""
    rule = get_rule(actor, rule_id, minimum=Role.ADMIN)
    with transaction.atomic():
        _audit(actor, AuditAction.ALERT_RULE_DELETED, rule)
        rule.delete()


def _audit(actor: Any, action: AuditAction, rule: AlertRule) -> None:
    from portal.services import audit

    audit.record(actor, action, rule, tenant=rule.tenant, metric=rule.metric, threshold=rule.threshold)


def _scope(tenant: Tenant | None) -> dict[str, Any]:
    return {"tenant": tenant} if tenant is not None else {"tenant__isnull": True}


# -- evaluating -------------------------------------------------------------------------------


def window_of(rule: AlertRule, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the complete minutes the rule judges at ``now``."""
    end = (now - timedelta(seconds=settings.PORTICO_ALERT_DELAY_SECONDS)).astimezone(UTC)
    end = end.replace(second=0, microsecond=0)
    return end - timedelta(minutes=rule.window_minutes), end


def _rollups(rule: AlertRule, start: datetime, end: datetime) -> QuerySet[Rollup]:
    rows = Rollup.objects.filter(granularity=Granularity.MINUTE, bucket_start__gte=start, bucket_start__lt=end)
    if rule.tenant_id is not None:
        rows = rows.filter(tenant_id=rule.tenant_id)
    if rule.api_id is not None:
        rows = rows.filter(api_id=rule.api_id)
    return rows


def measure(rule: AlertRule, now: datetime, *, redis_client: Any = None) -> float | None:
    """The rule's metric at ``now``; None when there is nothing to judge."""
    start, end = window_of(rule, now)
    if rule.metric in (AlertMetric.ERROR_RATE, AlertMetric.P95_LATENCY_MS):
        totals = Totals()
        for row in _rollups(rule, start, end).values(
            "requests", "errors_4xx", "errors_5xx", "latency_histogram", "latency_max_ms"
        ):
            totals.merge(row)
        if rule.metric == AlertMetric.ERROR_RATE:
            rate = totals.error_rate
            return None if rate is None else rate * 100
        return totals.percentile(95)
    if rule.metric in (AlertMetric.TRAFFIC_DROP, AlertMetric.TRAFFIC_SPIKE):
        width = end - start
        current = _rollups(rule, start, end).aggregate(n=Sum("requests"))["n"] or 0
        before = _rollups(rule, start - BASELINE_WINDOWS * width, start).aggregate(n=Sum("requests"))["n"] or 0
        baseline = before / BASELINE_WINDOWS
        if baseline <= 0:
            return None
        change = (current - baseline) / baseline * 100
        return -change if rule.metric == AlertMetric.TRAFFIC_DROP else change
    if rule.metric == AlertMetric.BUDGET_USE:
        from llm.budget_alerts import policy_of
        from llm.budgets import spend_in_period

        budget = rule.budget
        if budget is None or not budget.spend_limit_usd:
            return None
        if redis_client is None:
            from portal.services.config_signal import redis_client as default_client

            redis_client = default_client()
        spend: Decimal = spend_in_period(redis_client, policy_of(budget), now)
        return float(spend / budget.spend_limit_usd * 100)
    return None


@dataclass(frozen=True)
class Change:
    rule_id: int
    event_id: int
    state: str
    value: float | None


def evaluate_alerts(now: datetime | None = None, *, redis_client: Any = None) -> list[Change]:
    """Judge every enabled rule at ``now``: open, keep or resolve its event, notifying on
    every opening and resolution. Returns the changes made."""
    now = now or timezone.now()
    changes: list[Change] = []
    for rule in AlertRule.objects.filter(enabled=True).select_related("tenant", "budget").order_by("pk"):
        try:
            value = measure(rule, now, redis_client=redis_client)
            change = _judge(rule, value, now)
        except (redis.RedisError, OSError) as error:
            log.warning("alerts: rule %s not judged this run (Redis: %s)", rule.pk, error)
            continue
        except IntegrityError:  # a concurrent run opened the event first; it notifies
            continue
        except Exception:  # one broken rule must not silence the others
            log.exception("alerts: rule %s could not be judged", rule.pk)
            continue
        if change is not None:
            changes.append(change)
    return changes


def _judge(rule: AlertRule, value: float | None, now: datetime) -> Change | None:
    holds = value is not None and value >= rule.threshold
    with transaction.atomic():
        firing = AlertEvent.objects.select_for_update().filter(rule=rule, state=AlertState.FIRING).first()
        if firing is None and holds:
            assert value is not None
            event = AlertEvent.objects.create(
                rule=rule,
                state=AlertState.FIRING,
                value=value,
                peak_value=value,
                started_at=now,
                history=[{"at": now.isoformat(), "state": AlertState.FIRING, "value": value}],
            )
            _notify(rule, event, now)
            return Change(rule.pk, event.pk, AlertState.FIRING, value)
        if firing is not None and not holds:
            firing.state = AlertState.RESOLVED
            firing.resolved_at = now
            firing.history = [*firing.history, {"at": now.isoformat(), "state": AlertState.RESOLVED, "value": value}][
                -HISTORY_LIMIT:
            ]
            firing.save(update_fields=["state", "resolved_at", "history"])
            _notify(rule, firing, now)
            return Change(rule.pk, firing.pk, AlertState.RESOLVED, value)
        if firing is not None and value is not None and value > firing.peak_value:
            firing.peak_value = value
            firing.save(update_fields=["peak_value"])
    return None


def payload(rule: AlertRule, event: AlertEvent) -> dict[str, Any]:
    """The webhook body (and what the e-mail says)."""
    latest = event.history[-1]["value"] if event.history else event.value
    return {
        "event": "alert." + event.state,
        "rule": {
            "id": rule.pk,
            "name": rule.name,
            "metric": rule.metric,
            "threshold": rule.threshold,
            "window_minutes": rule.window_minutes,
            "api_id": rule.api_id,
        },
        "alert_id": event.pk,
        "state": event.state,
        "value": latest,
        "value_when_fired": event.value,
        "peak_value": event.peak_value,
        "threshold": rule.threshold,
        "started_at": event.started_at.isoformat(),
        "resolved_at": event.resolved_at.isoformat() if event.resolved_at else None,
        "tenant": {"id": rule.tenant_id, "name": rule.tenant.name} if rule.tenant else None,
    }


def _notify(rule: AlertRule, event: AlertEvent, now: datetime) -> None:
    """E-mail (on commit) and queue the webhook, once per event and state."""
    data = payload(rule, event)
    if rule.webhook_url:
        WebhookDelivery.objects.create(
            event=event,
            state=event.state,
            delivery_id=f"alert-{event.pk}-{event.state}-{secrets.token_hex(6)}",
            body=json.dumps(data, separators=(",", ":"), sort_keys=True),
            next_attempt_at=now,
        )
    if rule.notify_email and settings.PORTICO_NOTIFY_ALERTS:
        subject, body = _mail(rule, event, data)
        if rule.tenant is not None:
            notify_tenant_owners(rule.tenant, subject, body)
        else:
            _mail_staff(subject, body)


def _fmt(rule: AlertRule, value: Any) -> str:
    if value is None:
        return "no data"
    return f"{value:.0f} ms" if rule.metric == AlertMetric.P95_LATENCY_MS else f"{value:.1f} %"


def _mail(rule: AlertRule, event: AlertEvent, data: dict[str, Any]) -> tuple[str, str]:
    scope = " ".join(rule.tenant.name.split()) if rule.tenant else "Platform"
    what = AlertMetric(rule.metric).label
    name = " ".join(rule.name.split())
    if event.state == AlertState.FIRING:
        subject = f"[Portico] Alert firing: {name} ({scope})"
        lines = [
            f"{what} over the last {rule.window_minutes} minutes is {_fmt(rule, data['value'])}, "
            f"at or above the threshold of {_fmt(rule, rule.threshold)}.",
            f"Firing since {event.started_at:%Y-%m-%d %H:%M} UTC. You will hear again when it resolves.",
        ]
    else:
        subject = f"[Portico] Alert resolved: {name} ({scope})"
        lines = [
            f"{what} is back below {_fmt(rule, rule.threshold)} ({_fmt(rule, data['value'])} now).",
            f"It fired from {event.started_at:%Y-%m-%d %H:%M} to {event.resolved_at:%Y-%m-%d %H:%M} UTC, "
            f"peaking at {_fmt(rule, event.peak_value)}.",
        ]
    return subject, "\n\n".join(lines)


def _mail_staff(subject: str, body: str) -> None:
    recipients = sorted(
        set(
            get_user_model()
            .objects.filter(is_staff=True, is_active=True)
            .exclude(email="")
            .values_list("email", flat=True)
        )
    )
    if not recipients:
        return

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception:  # a broken mail server must not undo the alert's state
            log.exception("could not send %r to staff", subject)

    transaction.on_commit(send)
