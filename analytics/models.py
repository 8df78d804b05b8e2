from django.db import models


class CallLog(models.Model):
    """One gateway call. ``request_id`` is unique so that ingesting a batch twice is harmless."""

    request_id = models.CharField(max_length=64, unique=True)
    # The X-Request-ID the client sent, if any: clients may reuse theirs, so it is not the key.
    client_request_id = models.CharField(max_length=128, blank=True)
    time = models.DateTimeField(db_index=True)
    api_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    version_id = models.BigIntegerField(null=True, blank=True)
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
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

    class Meta:
        ordering = ["-time"]
        indexes = [models.Index(fields=["tenant_id", "time"])]

    def __str__(self) -> str:
        return f"{self.time:%H:%M:%S} {self.method} {self.path} {self.status}"
