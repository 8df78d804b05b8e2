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


# The gateway's MCP server (gateway/mcp.py) answers exactly this path; paths under it route as usual.
MCP_ENDPOINT_PATH = "/mcp"
MCP_ENDPOINT_MESSAGE = "The base path /mcp is the gateway's MCP server; choose another base path."


def is_reserved_base_path(path: str) -> bool:
    return path.lower().startswith(RESERVED_BASE_PATH_PREFIX)


def is_mcp_endpoint(path: str) -> bool:
    return path.lower().rstrip("/") == MCP_ENDPOINT_PATH


def validate_base_path_not_reserved(value: str) -> None:
    if is_reserved_base_path(value):
        raise ValidationError(RESERVED_BASE_PATH_MESSAGE, code="reserved")
    if is_mcp_endpoint(value):
        raise ValidationError(MCP_ENDPOINT_MESSAGE, code="reserved_mcp")


# The gateway answers the LLM endpoints (OpenAI- and Anthropic-compatible) at its root, for
# every AI route. A REST base path equal to one of them, or a prefix of one on a segment
# boundary (/v1, /v1/chat), or under one (/v1/models/x: OpenAI's "retrieve model",
# /v1/messages/count_tokens), would take their traffic or be taken by it.
LLM_ENDPOINT_PATHS = ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/messages")
LLM_ENDPOINT_MESSAGE = (
    "This base path would shadow the gateway's LLM endpoints (/v1/chat/completions, /v1/embeddings, "
    "/v1/models, /v1/messages), which it serves at its root; choose another base path."
)


def shadows_llm_endpoint(path: str) -> bool:
    """True when ``path`` equals an LLM endpoint, is a prefix of one on a segment boundary,
    or lies under one. Compared in any case, like /_portico."""
    path = path.lower().rstrip("/")
    if not path:
        return False
    return any(
        endpoint == path or endpoint.startswith(path + "/") or path.startswith(endpoint + "/")
        for endpoint in LLM_ENDPOINT_PATHS
    )


def validate_base_path_not_llm_endpoint(value: str) -> None:
    if shadows_llm_endpoint(value):
        raise ValidationError(LLM_ENDPOINT_MESSAGE, code="reserved_llm")


def base_path_refusal(path: str | None) -> str | None:
    """Why the gateway must never route ``path`` as a REST base path, or None when it may."""
    if not path:
        return None
    if is_reserved_base_path(path):
        return RESERVED_BASE_PATH_MESSAGE
    if is_mcp_endpoint(path):
        return MCP_ENDPOINT_MESSAGE
    if shadows_llm_endpoint(path):
        return LLM_ENDPOINT_MESSAGE
    return None


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public: every developer sees it"
    PRIVATE = "private", "Private: only the owner tenant sees it"


class Tag(models.Model):
    name = models.SlugField(max_length=40, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKind(models.TextChoices):
    REST = "rest", "REST: versions route by base path to upstream targets"
    AI = "ai", "AI: versions publish LLM model routes (llm.ModelRoute) on the gateway's /v1 endpoints"
    PROMPT = "prompt", "Prompt: each version is a prompt template on a model route (llm.PromptVersion), served as JSON"


class Api(models.Model):
    """A product in the catalog. Versions carry the routing; plans carry the limits.

    A REST API's versions route by base path to upstream targets. An AI API's versions carry
    only the lifecycle (published, deprecated, retired): its model routes (``llm.ModelRoute``)
    are served on the gateway's LLM endpoints, and plans, subscriptions and keys work as for
    REST APIs.
    """

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    owner = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="published_apis")
    description = models.TextField(blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="apis")
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    kind = models.CharField(max_length=8, choices=ApiKind.choices, default=ApiKind.REST)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API"

    def __str__(self) -> str:
        return self.name

    @property
    def is_ai(self) -> bool:
        return self.kind == ApiKind.AI

    @property
    def is_prompt(self) -> bool:
        return self.kind == ApiKind.PROMPT

    def clean(self) -> None:
        if self.pk is None or self.kind == ApiKind.AI:
            return
        # Turning an AI API into a REST one: its versions need base paths and its model
        # routes would be orphaned (their gateway would stop serving them).
        if self.versions.filter(base_path__isnull=True).exists():
            raise ValidationError({"kind": "Some versions of this API have no base path; a REST API needs one each."})
        routes = getattr(self, "llm_routes", None)
        if routes is not None and routes.exists():
            raise ValidationError({"kind": "LLM model routes are published through this API; move them first."})


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
        null=True,
        blank=True,
        validators=[base_path_validator, validate_base_path_not_reserved, validate_base_path_not_llm_endpoint],
        help_text=(
            "Where the gateway serves this version, e.g. /weather/v1 (REST APIs only; an AI API's routes are "
            "served on the gateway's /v1 LLM endpoints). Paths under /_portico and the LLM endpoints are reserved."
        ),
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

    def clean(self) -> None:
        api = getattr(self, "api", None) if self.api_id else None
        if api is not None and not api.is_ai and not self.base_path:
            raise ValidationError({"base_path": "A version of a REST API needs a base path."})

    @property
    def is_visible_to_developers(self) -> bool:
        return self.state in (VersionState.PUBLISHED, VersionState.DEPRECATED)


class UpstreamTarget(models.Model):
    version = models.ForeignKey(ApiVersion, on_delete=models.CASCADE, related_name="targets")
    url = models.URLField(max_length=300)
    weight = models.PositiveIntegerField(default=100, validators=[MinValueValidator(1)])
    enabled = models.BooleanField(default=True)
    # Set when a provider team (not staff) chose this URL: the gateway then connects only
    # after the address it resolved passes the same rule as the save-time check (public, or
    # in PORTICO_UPSTREAM_ALLOWED_NETWORKS), so a name repointed inward later is refused.
    requires_public_address = models.BooleanField(
        default=False,
        help_text="Connect only to public addresses (or PORTICO_UPSTREAM_ALLOWED_NETWORKS), checked by the "
        "gateway at every new connection. Set for targets a provider team entered.",
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.url} (weight {self.weight})"

    def clean(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValidationError({"url": "Upstream targets are http:// or https:// URLs."})
