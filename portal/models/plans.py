from django.core.exceptions import ValidationError
from django.db import models

from portal.models.catalog import Api


class Plan(models.Model):
    """What a subscription may consume. An empty limit means 'no limit of that kind'."""

    api = models.ForeignKey(Api, on_delete=models.CASCADE, related_name="plans")
    name = models.CharField(max_length=60)
    description = models.CharField(max_length=300, blank=True)
    requests_per_second = models.PositiveIntegerField(null=True, blank=True)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    daily_quota = models.PositiveIntegerField(null=True, blank=True)
    monthly_quota = models.PositiveIntegerField(null=True, blank=True)
    requires_approval = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["api__name", "name"]
        constraints = [models.UniqueConstraint(fields=["api", "name"], name="unique_plan_name_per_api")]

    def __str__(self) -> str:
        return f"{self.api.name} / {self.name}"

    def clean(self) -> None:
        for field in ("requests_per_second", "requests_per_minute", "daily_quota", "monthly_quota"):
            if getattr(self, field) == 0:
                raise ValidationError({field: "Use an empty value for 'no limit'; 0 would block everything."})
