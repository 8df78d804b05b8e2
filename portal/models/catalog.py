from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from portal.models.tenants import Tenant

base_path_validator = RegexValidator(
    r"^/[A-Za-z0-9._~\-/]*[A-Za-z0-9._~\-]$",
    "A base path starts with '/', has no trailing '/', and uses URL-safe characters only.",
)

# The gateway answers its own operations endpoints (healthz, readyz, metrics) under /_portico/.
RESERVED_BASE_PATH_PREFIX = "/_portico"
RESERVED_BASE_PATH_MESSAGE = (
    "Base paths starting with /_portico (in any case) are reserved for the gateway's own endpoints "
    "(health, readiness, metrics); choose another base path."
)


def is_reserved_base_path(path: str) -> bool:
    return path.lower().startswith(RESERVED_BASE_PATH_PREFIX)


def validate_base_path_not_reserved(value: str) -> None:
    if is_reserved_base_path(value):
        raise ValidationError(RESERVED_BASE_PATH_MESSAGE, code="reserved")


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public: every developer sees it"
    PRIVATE = "private", "Private: only the owner tenant sees it"


class Tag(models.Model):
    name = models.SlugField(max_length=40, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Api(models.Model):
    """A product in the catalog. Versions carry the routing; plans carry the limits."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    owner = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="published_apis")
    description = models.TextField(blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="apis")
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API"

    def __str__(self) -> str:
        return self.name


class VersionState(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"


class LoadBalancing(models.TextChoices):
    WEIGHTED_ROUND_ROBIN = "round_robin", "Weighted round-robin"
    LEAST_CONNECTIONS = "least_connections", "Least connections"


class ApiVersion(models.Model):
    """One routable version of an API, with its lifecycle state and upstream policy.

    The state only moves through ``portal.services.lifecycle``; it is not editable in forms.
    """

    api = models.ForeignKey(Api, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=40)
    base_path = models.CharField(
        max_length=200,
        unique=True,
        validators=[base_path_validator, validate_base_path_not_reserved],
        help_text="Where the gateway serves this version, e.g. /weather/v1. Paths under /_portico are reserved.",
    )
    host = models.CharField(
        max_length=200, blank=True, help_text="Optional: only route requests whose Host header matches."
    )
    openapi = models.JSONField(default=dict, blank=True, help_text="OpenAPI 3 document for the docs.")
    state = models.CharField(max_length=12, choices=VersionState.choices, default=VersionState.DRAFT, editable=False)
    sunset_at = models.DateTimeField(null=True, blank=True, editable=False)
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    deprecated_at = models.DateTimeField(null=True, blank=True, editable=False)
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)

    load_balancing = models.CharField(
        max_length=20, choices=LoadBalancing.choices, default=LoadBalancing.WEIGHTED_ROUND_ROBIN
    )
    connect_timeout_ms = models.PositiveIntegerField(default=2000, validators=[MinValueValidator(1)])
    read_timeout_ms = models.PositiveIntegerField(default=30000, validators=[MinValueValidator(1)])
    total_timeout_ms = models.PositiveIntegerField(default=60000, validators=[MinValueValidator(1)])
    retries = models.PositiveSmallIntegerField(default=1, validators=[MaxValueValidator(5)])
    cache_ttl_seconds = models.PositiveIntegerField(default=0, help_text="0 turns the response cache off.")
    max_request_bytes = models.PositiveIntegerField(default=10 * 1024 * 1024)

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["api__name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["api", "version"], name="unique_version_per_api")]

    def __str__(self) -> str:
        return f"{self.api.name} {self.version}"

    @property
    def is_visible_to_developers(self) -> bool:
        return self.state in (VersionState.PUBLISHED, VersionState.DEPRECATED)


class UpstreamTarget(models.Model):
    version = models.ForeignKey(ApiVersion, on_delete=models.CASCADE, related_name="targets")
    url = models.URLField(max_length=300)
    weight = models.PositiveIntegerField(default=100, validators=[MinValueValidator(1)])
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.url} (weight {self.weight})"

    def clean(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValidationError({"url": "Upstream targets are http:// or https:// URLs."})
