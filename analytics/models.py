from django.conf import settings
from django.db import models


class CallLog(models.Model):
    """One gateway call. ``request_id`` is unique so that ingesting a batch twice is harmless."""

    request_id = models.CharField(max_length=64, unique=True)
    # The X-Request-ID the client sent, if any: clients may reuse theirs, so it is not the key.
    client_request_id = models.CharField(max_length=128, blank=True)
    # The W3C trace the call belongs to (32 hex digits; "" for calls recorded before tracing).
    trace_id = models.CharField(max_length=32, blank=True)
    time = models.DateTimeField(db_index=True)
    # No index of their own: with a million calls, the explorer's, the call page's and the
    # reports' queries get the same plans without one (on ``time`` or ``request_id``), and each
    # index is paid on every ingested row (bench/calllog_indexes.py; migration 0009).
    api_id = models.BigIntegerField(null=True, blank=True)
    version_id = models.BigIntegerField(null=True, blank=True)
    tenant_id = models.BigIntegerField(null=True, blank=True)
    application_id = models.BigIntegerField(null=True, blank=True)
    key_prefix = models.CharField(max_length=16, blank=True)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=2000)
    status = models.PositiveSmallIntegerField()
    latency_ms = models.FloatField()
    upstream_latency_ms = models.FloatField(null=True, blank=True)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    cache_hit = models.BooleanField(default=False)
    error_code = models.CharField(max_length=40, blank=True)
    client_ip = models.CharField(max_length=45, blank=True)
    model = models.CharField(max_length=100, blank=True)
    tokens_in = models.PositiveIntegerField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)  # NULL: a price is unknown
    provider = models.CharField(max_length=40, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    tokens_cached = models.PositiveIntegerField(null=True, blank=True)
    tokens_estimated = models.BooleanField(default=False)
    ttft_ms = models.FloatField(null=True, blank=True)
    overhead_ms = models.FloatField(null=True, blank=True)
    pii_masked = models.PositiveIntegerField(default=0)
    fallbacks = models.PositiveSmallIntegerField(default=0)
    # Masked and size-capped by the gateway; shown to the owning tenant only.
    prompt_capture = models.TextField(null=True, blank=True)
    response_capture = models.TextField(null=True, blank=True)
    # "mcp" when the call came through the gateway's MCP server (a tool call), else "".
    channel = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["-time"]
        indexes = [
            models.Index(fields=["tenant_id", "time"]),
            # A trace has a handful of calls: the explorer finds them by this alone (a Meta
            # index, so PostgreSQL gets no LIKE-pattern twin as with db_index: see 0005).
            models.Index(fields=["trace_id"], name="analytics_calllog_trace_id"),
        ]

    def __str__(self) -> str:
        return f"{self.time:%H:%M:%S} {self.method} {self.path} {self.status}"


class Granularity(models.TextChoices):
    """The rollup tiers, finest first. Each has its own retention (``analytics.retention``)."""

    MINUTE = "minute", "Minute"
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class Rollup(models.Model):
    """Calls aggregated over one time bucket for one combination of dimensions.

    Every field merges by addition (``max`` for ``latency_max_ms``; NULL-aware for
    ``cost``), so an hour is the merge of its minutes and a day the merge of its hours. The
    latency histogram has fixed log-spaced buckets (``analytics.rollups.HISTOGRAM``): merged
    percentiles are exact up to one bucket's width (10 %), never averages of percentiles.
    A bucket is recomputed by replacing all its rows (``analytics.rollups``), never by adding.
    """

    granularity = models.CharField(max_length=6, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    api_id = models.BigIntegerField(null=True, blank=True)
    version_id = models.BigIntegerField(null=True, blank=True)
    tenant_id = models.BigIntegerField(null=True, blank=True)
    application_id = models.BigIntegerField(null=True, blank=True)
    status_class = models.PositiveSmallIntegerField()  # 2 for 2xx ... 5 for 5xx; 0 outside 100-599
    model = models.CharField(max_length=100, blank=True)
    requests = models.BigIntegerField(default=0)
    errors_4xx = models.BigIntegerField(default=0)
    errors_5xx = models.BigIntegerField(default=0)
    # Sparse latency histogram: {"<bucket index>": count}; see analytics.rollups.HISTOGRAM.
    latency_histogram = models.JSONField(default=dict)
    latency_sum_ms = models.FloatField(default=0.0)
    latency_max_ms = models.FloatField(default=0.0)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    tokens_in = models.BigIntegerField(default=0)
    tokens_out = models.BigIntegerField(default=0)
    # Sum of the priced calls' cost; NULL when no call of the bucket had a price.
    cost = models.DecimalField(max_digits=20, decimal_places=8, null=True, blank=True)
    # Calls that used tokens but had no price: their cost is unknown, not 0.
    unpriced_calls = models.BigIntegerField(default=0)
    cache_hits = models.BigIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["granularity", "bucket_start"]),
            models.Index(fields=["granularity", "tenant_id", "bucket_start"]),
            models.Index(fields=["granularity", "api_id", "bucket_start"]),
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket_start:%Y-%m-%d %H:%M} api {self.api_id}: {self.requests}"


class RollupMark(models.Model):
    """A bucket of ``granularity`` whose source rows changed since it was last computed:
    the minute run marks hours, the hour run marks days. ``marked_at`` moves on every new
    mark, so a run deletes only the marks it has seen (one marked again meanwhile stays)."""

    granularity = models.CharField(max_length=6, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    marked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["granularity", "bucket_start"], name="one_mark_per_rollup_bucket")
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket_start:%Y-%m-%d %H:%M} marked at {self.marked_at:%H:%M:%S}"


class RollupWatermark(models.Model):
    """How far the minute run has read CallLog, by id: up to ``last_id``. The ids of the run
    before, (``previous_id``, ``last_id``], held ``last_count`` rows when read; the next run
    counts them again and reads that range again only if the count grew, so a row whose
    insert committed out of id order (concurrent ingest transactions) within one run interval
    is still folded in. Its row is also the lock that keeps two runs of a tier apart."""

    name = models.CharField(max_length=20, unique=True)
    last_id = models.BigIntegerField(default=0)
    previous_id = models.BigIntegerField(default=0)
    last_count = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.previous_id}..{self.last_id}"


class ReportKind(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"


class TrendReport(models.Model):
    """A tenant's (or, with no tenant, the whole platform's) traffic over one period, against
    the period before: figures, top lists and anomalies in ``data`` (``analytics.reports``).
    Scheduled reports are unique per kind, scope and period start; on-demand ones are not."""

    kind = models.CharField(max_length=6, choices=ReportKind.choices)
    tenant = models.ForeignKey(
        "portal.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="trend_reports"
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    on_demand = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    data = models.JSONField(default=dict)
    anomaly_count = models.PositiveIntegerField(default=0)
    emailed_at = models.DateTimeField(null=True, blank=True)
    emailed_to = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-period_start", "-created_at"]
        indexes = [models.Index(fields=["tenant", "-period_start"])]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "tenant", "period_start"],
                condition=models.Q(on_demand=False, tenant__isnull=False),
                name="one_scheduled_report_per_tenant_and_period",
            ),
            models.UniqueConstraint(
                fields=["kind", "period_start"],
                condition=models.Q(on_demand=False, tenant__isnull=True),
                name="one_scheduled_platform_report_per_period",
            ),
        ]

    def __str__(self) -> str:
        scope = self.tenant.name if self.tenant_id and self.tenant else "Platform"
        return f"{scope}: {self.get_kind_display().lower()} report from {self.period_start:%Y-%m-%d %H:%M}"


class AlertMetric(models.TextChoices):
    """What an alert rule watches over its window. Thresholds are percents except latency."""

    ERROR_RATE = "error_rate", "Error rate (% of requests answered 4xx or 5xx)"
    P95_LATENCY_MS = "p95_latency_ms", "p95 latency (ms)"
    TRAFFIC_DROP = "traffic_drop", "Traffic drop (% below the trailing windows)"
    TRAFFIC_SPIKE = "traffic_spike", "Traffic spike (% above the trailing windows)"
    BUDGET_USE = "budget_use", "Budget use (% of the spend limit this period)"


class AlertRule(models.Model):
    """A condition on a tenant's calls (or, with no tenant, the whole platform's: staff only),
    evaluated every minute from the minute rollups (``analytics.alerts``). It fires when the
    metric over the last ``window_minutes`` reaches ``threshold``, and notifies by e-mail
    (the tenant's owners) and by a signed webhook (``analytics.webhooks``)."""

    tenant = models.ForeignKey(
        "portal.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules"
    )
    name = models.CharField(max_length=100)
    metric = models.CharField(max_length=16, choices=AlertMetric.choices)
    threshold = models.FloatField()
    window_minutes = models.PositiveIntegerField(default=5)
    api = models.ForeignKey("portal.Api", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    budget = models.ForeignKey("llm.Budget", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    notify_email = models.BooleanField(default=True)
    webhook_url = models.URLField(max_length=500, blank=True)
    # HMAC key of the webhook signature: shown once, when the rule is made (or the secret renewed).
    webhook_secret = models.CharField(max_length=64, editable=False)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name}: {self.metric} >= {self.threshold:g} over {self.window_minutes} min"


class AlertState(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class AlertEvent(models.Model):
    """One episode of a rule's condition holding: opened firing, closed resolved. ``history``
    lists the evaluations that changed it ({"at", "state", "value"}). At most one event of a
    rule is firing at a time (a constraint), so two evaluation runs cannot open two."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    state = models.CharField(max_length=8, choices=AlertState.choices, default=AlertState.FIRING)
    value = models.FloatField()  # when it fired; the value at resolution is in history
    peak_value = models.FloatField()
    started_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    history = models.JSONField(default=list)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["rule", "-started_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["rule"], condition=models.Q(state="firing"), name="one_firing_event_per_alert_rule"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule.name}: {self.state} since {self.started_at:%Y-%m-%d %H:%M}"


class WebhookDelivery(models.Model):
    """One notification (an event's firing or its resolution) to the rule's webhook, tried
    until the receiver answers 2xx or ``analytics.webhooks.MAX_ATTEMPTS`` tries have failed.
    The body is fixed when queued, so every try sends the same bytes and the same
    ``X-Portico-Event-Id`` (``delivery_id``): receivers drop repeats by it."""

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=8, choices=AlertState.choices)
    delivery_id = models.CharField(max_length=40, unique=True)
    body = models.TextField()
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # NULL: nothing more to try
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)  # HTTP status; NULL: no answer
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    given_up_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["next_attempt_at"])]
        constraints = [models.UniqueConstraint(fields=["event", "state"], name="one_webhook_delivery_per_event_state")]

    def __str__(self) -> str:
        return f"{self.delivery_id}: {self.state}, {self.attempts} attempts"
