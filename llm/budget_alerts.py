"""E-mails to a tenant's owners when an LLM spend budget reaches 80 % and 100 % of its limit,
each once per budget period.

Run every minute by Celery beat (``llm.send_budget_alerts``) or by ``manage.py
send_budget_alerts``. Spend is what the gateway counted in Redis (``llm.budgets``), which
includes the reserved estimates of calls in flight: an alert can fire on an estimate that
the call's real usage later lowers. A ``BudgetAlert`` row (unique per budget, period start
and threshold) decides "once": the row is written before the e-mail leaves (on commit), so
two concurrent runs send one e-mail, and a mail server that fails loses that e-mail (logged)
rather than sending it every minute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from llm.budgets import period_bounds, spend_in_period
from llm.canonical import BudgetPolicy
from llm.models import Budget, BudgetAlert
from portal.services.config_signal import redis_client as default_redis_client
from portal.services.notifications import notify_tenant_owners

log = logging.getLogger(__name__)

THRESHOLDS = (80, 100)


@dataclass(frozen=True)
class Alert:
    budget_id: int
    threshold: int
    spend_usd: Decimal
    recipients: int


def policy_of(budget: Budget) -> BudgetPolicy:
    return BudgetPolicy(
        scope=budget.scope,
        scope_id=budget.scope_id or 0,
        budget_id=budget.pk,
        period=budget.period,
        spend_limit_usd=budget.spend_limit_usd,
        tokens_per_minute=budget.tokens_per_minute,
        requests_per_minute=budget.requests_per_minute,
    )


def reached_thresholds(spend: Decimal, limit: Decimal) -> list[int]:
    return [t for t in THRESHOLDS if spend * 100 >= limit * t]


def _message(budget: Budget, threshold: int, spend: Decimal, start: datetime, end: datetime) -> tuple[str, str]:
    limit = budget.spend_limit_usd or Decimal(0)
    period = budget.get_period_display().split(" ")[0].lower()
    what = f"the {period} LLM budget of {budget.get_scope_display().lower()} {budget.subject_label}"
    subject = f"[Portico] {threshold} % of {what} used"
    lines = [
        f"{budget.subject_label} has spent ${spend.quantize(Decimal('0.01'))} of its "
        f"${limit.quantize(Decimal('0.01'))} {period} budget for AI calls "
        f"(period {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC).",
    ]
    if threshold >= 100:
        lines.append(f"AI calls under this budget are refused until {end:%Y-%m-%d %H:%M} UTC, or until it is raised.")
    else:
        lines.append("Calls are refused once the whole budget is spent; ask an administrator to raise it if needed.")
    return subject, "\n\n".join(lines)


def _alert(budget: Budget, spend: Decimal, now: datetime) -> Alert | None:
    limit = budget.spend_limit_usd
    if limit is None or limit <= 0:
        return None
    reached = reached_thresholds(spend, limit)
    if not reached:
        return None
    start, end = period_bounds(budget.period, now)
    top = max(reached)
    try:
        with transaction.atomic():
            already = set(
                BudgetAlert.objects.filter(budget=budget, period_start=start).values_list("threshold", flat=True)
            )
            if top in already:
                return None
            subject, body = _message(budget, top, spend, start, end)
            recipients = notify_tenant_owners(budget.owner_tenant, subject, body)
            # A jump straight past 100 % sends one e-mail, and marks 80 % done too.
            for threshold in reached:
                if threshold not in already:
                    BudgetAlert.objects.create(
                        budget=budget,
                        period_start=start,
                        threshold=threshold,
                        spend_usd=spend,
                        recipients=recipients if threshold == top else 0,
                    )
    except IntegrityError:
        return None  # a concurrent run wrote the row first: it sends the e-mail
    return Alert(budget.pk, top, spend, recipients)


def send_budget_alerts(*, redis_client: Any = None, now: datetime | None = None) -> list[Alert]:
    """Check every budget with a spend limit; e-mail its tenant's owners at 80 % and 100 %
    of the current period, once each. Returns the alerts sent."""
    if not settings.PORTICO_NOTIFY_BUDGET_ALERTS:
        return []
    client = redis_client if redis_client is not None else default_redis_client()
    now = now or timezone.now()
    sent: list[Alert] = []
    budgets = Budget.objects.filter(spend_limit_usd__isnull=False).select_related(
        "api_key__application__tenant", "application__tenant", "tenant"
    )
    for budget in budgets.order_by("pk"):
        try:
            spend = spend_in_period(client, policy_of(budget), now)
        except (redis.RedisError, OSError) as error:
            log.warning("budget alerts: Redis unreachable (%s); trying again next run", error)
            break
        if alert := _alert(budget, spend, now):
            sent.append(alert)
    return sent
