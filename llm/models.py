"""The LLM control plane: providers and their key pools, models with prices, public model
routes (published through an ``Api`` of kind ai), and budgets.

Rows change only through ``llm.services`` (admin and REST API call it), which validates with
``full_clean`` and tells the gateways. The gateway serves from ``llm.snapshot.build_ai_config``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower

from portal.models import ApiKey, Application, Tenant
from portal.models.catalog import Api, ApiKind


class ProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    AZURE_OPENAI = "azure-openai", "Azure OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    GEMINI = "gemini", "Google Gemini"
    MISTRAL = "mistral", "Mistral"
    OPENAI_COMPATIBLE = "openai-compatible", "OpenAI-compatible (vLLM, Ollama, ...)"


# Where each kind's adapter appends its paths. Azure's host names the customer's resource
# and a compatible server lives wherever it was started: those two have no default.
DEFAULT_BASE_URLS: dict[str, str] = {
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.MISTRAL: "https://api.mistral.ai/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
    ProviderKind.GEMINI: "https://generativelanguage.googleapis.com",
}
# Azure OpenAI's data-plane API versions: dates, GA or "-preview".
AZURE_API_VERSION_RE = re.compile(r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])(-preview)?$")
DEFAULT_AZURE_API_VERSION = "2024-10-21"


def validate_base_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("A provider's base URL is an http:// or https:// URL with a host.", code="invalid_url")
    if parts.username or parts.password:
        raise ValidationError("Put credentials in the provider's key pool, never in its URL.", code="credentials")
    if parts.query or parts.fragment:
        raise ValidationError("A base URL has no query or fragment; the adapter adds its own.", code="invalid_url")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise ValidationError("A base URL has no spaces or control characters.", code="invalid_url")


def validate_azure_api_version(value: str) -> None:
    if value and not AZURE_API_VERSION_RE.match(value):
        raise ValidationError(
            "An Azure OpenAI API version is a date, e.g. 2024-10-21 or 2025-04-01-preview.", code="invalid"
        )


class Provider(models.Model):
    name = models.CharField(max_length=80, unique=True)
    kind = models.CharField(max_length=20, choices=ProviderKind.choices)
    base_url = models.CharField(
        max_length=300,
        validators=[validate_base_url],
        help_text="Empty: the provider's public endpoint (required for Azure and OpenAI-compatible servers).",
        blank=True,
    )
    azure_api_version = models.CharField(
        max_length=32,
        blank=True,
        validators=[validate_azure_api_version],
        help_text=f"Azure OpenAI only, e.g. {DEFAULT_AZURE_API_VERSION}.",
    )
    enabled = models.BooleanField(default=True, help_text="A disabled provider's models leave every route.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self) -> None:
        self.base_url = (self.base_url or "").strip().rstrip("/")
        self.azure_api_version = (self.azure_api_version or "").strip()
        if not self.base_url:
            default = DEFAULT_BASE_URLS.get(self.kind)
            if default is None:
                example = (
                    "https://{resource}.openai.azure.com"
                    if self.kind == ProviderKind.AZURE_OPENAI
                    else "http://127.0.0.1:11434/v1"
                )
                raise ValidationError(
                    {"base_url": f"A {self.get_kind_display()} provider needs a base URL, e.g. {example}."}
                )
            self.base_url = default
        if self.kind == ProviderKind.AZURE_OPENAI:
            self.azure_api_version = self.azure_api_version or DEFAULT_AZURE_API_VERSION
        elif self.azure_api_version:
            raise ValidationError({"azure_api_version": "Only Azure OpenAI providers take an API version."})


class KeyState(models.TextChoices):
    ENABLED = "enabled", "Enabled"
    DISABLED = "disabled", "Disabled"
    RATE_LIMITED = "rate_limited", "Rate-limited until a time"
    EXHAUSTED = "exhausted", "Exhausted (quota or credit used up)"
    EXPIRED = "expired", "Expired"


class ProviderKey(models.Model):
    """One credential of a provider's key pool. Only its ciphertext (``llm.crypto``) and its
    last four characters are stored; the secret is never shown back."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="keys")
    label = models.CharField(max_length=80, blank=True)
    secret_ciphertext = models.TextField(editable=False)
    last4 = models.CharField(max_length=4, blank=True, editable=False)
    priority = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(1000)], help_text="Lower first.")
    state = models.CharField(max_length=16, choices=KeyState.choices, default=KeyState.ENABLED)
    state_until = models.DateTimeField(null=True, blank=True, help_text="When a rate-limited key may be used again.")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "priority", "id"]
        verbose_name = "provider key"

    def __str__(self) -> str:
        shown = f"…{self.last4}" if self.last4 else "…"
        return f"{self.provider.name} key {self.label or self.pk} {shown}"

    def clean(self) -> None:
        if self.state == KeyState.RATE_LIMITED and self.state_until is None:
            raise ValidationError({"state_until": "A rate-limited key needs the time it may be used again."})
        if self.state != KeyState.RATE_LIMITED:
            self.state_until = None


class Capability(models.TextChoices):
    CHAT = "chat", "Chat completions"
    EMBEDDINGS = "embeddings", "Embeddings"
    TOOLS = "tools", "Tools / function calling"
    VISION = "vision", "Image input"
    JSON = "json", "JSON mode / structured output"


CALL_CAPABILITIES = frozenset({Capability.CHAT.value, Capability.EMBEDDINGS.value})


def validate_choice_list(value: Any, allowed: frozenset[str], what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(f"{what} is a list of names.", code="invalid")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValidationError(
            f"Unknown {what.lower()}: {', '.join(unknown)}; use: {', '.join(sorted(allowed))}.", code="invalid"
        )
    if len(set(value)) != len(value):
        raise ValidationError(f"{what} lists each name once.", code="duplicate")
    return value


def validate_capabilities(value: Any) -> None:
    validate_choice_list(value, frozenset(Capability.values), "Capabilities")
    if not value:
        raise ValidationError("A model has at least one capability (chat or embeddings).", code="required")


def default_capabilities() -> list[str]:
    return [Capability.CHAT.value]


PRICE_HELP = "USD per million tokens; empty means unknown (cost is then recorded as unknown, never 0)."


def price_field(label: str) -> models.DecimalField:
    return models.DecimalField(
        label,
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text=PRICE_HELP,
    )


class Model(models.Model):
    """One upstream model on one provider, with its prices."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    upstream_name = models.CharField(
        max_length=200, help_text="The provider's model name (for Azure OpenAI: the deployment name)."
    )
    display_name = models.CharField(max_length=120, blank=True)
    input_price = price_field("input price per million tokens")
    output_price = price_field("output price per million tokens")
    cached_input_price = price_field("cached input price per million tokens")
    context_window = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    capabilities = models.JSONField(default=default_capabilities, validators=[validate_capabilities])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "upstream_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "upstream_name"],
                name="unique_upstream_model_per_provider",
                violation_error_message="This provider already has a model with this upstream name.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.display_name or self.upstream_name} @ {self.provider.name}"

    def clean(self) -> None:
        self.upstream_name = (self.upstream_name or "").strip()
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in self.upstream_name):
            raise ValidationError({"upstream_name": "A model name has no control characters."})


ALIAS_RE = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,99}$"
alias_validator = RegexValidator(
    ALIAS_RE,
    "An alias starts with a letter or digit and uses letters, digits, '.', '_', ':' and '-' (e.g. gpt-4o-mini, "
    "claude:fast), at most 100 characters.",
)


class PiiMode(models.TextChoices):
    OFF = "off", "Off"
    REDACT = "redact", "Redact (replace with a type marker)"
    MASK = "mask", "Mask and restore (placeholders upstream, originals back in the answer)"
    BLOCK = "block", "Block (refuse requests that contain personal data)"


class PiiDetector(models.TextChoices):
    EMAIL = "email", "E-mail addresses"
    PHONE = "phone", "Phone numbers"
    CARD = "card", "Card numbers (Luhn-checked)"
    IBAN = "iban", "IBANs"
    IP = "ip", "IP addresses"
    SECRET = "secret", "Secret-looking tokens (API keys, JWTs)"


def default_pii_detectors() -> list[str]:
    return list(PiiDetector.values)


def validate_pii_detectors(value: Any) -> None:
    validate_choice_list(value, frozenset(PiiDetector.values), "PII detectors")


DENY_LIST_MAX_LINES = 500
DENY_LIST_MAX_LINE = 200


def deny_list_entries(text: str) -> list[str]:
    """The deny list's entries: one word or ``/regex/`` a line, blank lines ignored."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def validate_deny_list(text: str) -> None:
    entries = deny_list_entries(text)
    if len(entries) > DENY_LIST_MAX_LINES:
        raise ValidationError(f"A deny list has at most {DENY_LIST_MAX_LINES} entries.", code="too_long")
    for number, entry in enumerate(entries, start=1):
        if len(entry) > DENY_LIST_MAX_LINE:
            raise ValidationError(f"Entry {number} is longer than {DENY_LIST_MAX_LINE} characters.", code="too_long")
        if len(entry) >= 2 and entry.startswith("/") and entry.endswith("/"):
            pattern = entry[1:-1]
            try:
                compiled = re.compile(pattern)
            except re.error as error:
                message = f"Entry {number}, /{pattern}/, is not a valid regex: {error}."
                raise ValidationError(message, code="regex") from error
            if compiled.match(""):
                # A pattern matching the empty string matches every prompt: refuse the mistake.
                raise ValidationError(f"Entry {number}, /{pattern}/, matches everything.", code="regex")
    # The gateway's own safety check (llm/pii.py): a pattern it refuses to run would make every
    # call on the route fail, so it is refused here, when it is saved.
    from llm.canonical import PiiPolicy
    from llm.pii import policy_errors

    problems = policy_errors(PiiPolicy(mode="off", deny=tuple(entries)))
    if problems:
        raise ValidationError("; ".join(problems), code="regex")


class ModelRoute(models.Model):
    """A public model alias: weighted targets (A/B), then an ordered fallback chain."""

    alias = models.CharField(max_length=100, unique=True, validators=[alias_validator])
    api = models.ForeignKey(
        Api,
        on_delete=models.PROTECT,
        related_name="llm_routes",
        limit_choices_to={"kind": ApiKind.AI},
        help_text="The AI API that publishes this route: its plans, subscriptions and keys decide who may call it.",
    )
    timeout_seconds = models.FloatField(default=60.0, validators=[MinValueValidator(0.1), MaxValueValidator(3600)])
    first_byte_timeout_seconds = models.FloatField(
        default=30.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text="Until the answer's head or first stream event.",
    )
    retries = models.PositiveSmallIntegerField(default=1, validators=[MaxValueValidator(5)])
    cache_ttl_seconds = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(30 * 86400)], help_text="0 turns the response cache off."
    )
    cache_nondeterministic = models.BooleanField(default=False, help_text="Cache answers to temperature > 0 too.")
    pii_mode = models.CharField(max_length=8, choices=PiiMode.choices, default=PiiMode.OFF)
    pii_detectors = models.JSONField(default=default_pii_detectors, validators=[validate_pii_detectors], blank=True)
    deny_list = models.TextField(
        blank=True, validators=[validate_deny_list], help_text="One word or /regex/ per line; matching prompts get 400."
    )
    capture = models.BooleanField(default=False, help_text="Attach masked, size-capped bodies to call records.")
    default_max_tokens = models.PositiveIntegerField(
        default=1024,
        validators=[MinValueValidator(1), MaxValueValidator(10_000_000)],
        help_text="Reserved against budgets when a request sets no max_tokens.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["alias"]
        verbose_name = "model route"
        constraints = [
            models.UniqueConstraint(
                Lower("alias"),
                name="unique_route_alias_any_case",
                violation_error_message="A route with this alias (in any letter case) already exists.",
            )
        ]

    def __str__(self) -> str:
        return self.alias

    def clean(self) -> None:
        first_byte, whole = self.first_byte_timeout_seconds, self.timeout_seconds
        if first_byte and whole and first_byte > whole:
            raise ValidationError(
                {"first_byte_timeout_seconds": "The first-byte timeout cannot exceed the whole call's timeout."}
            )
        if self.pii_mode != PiiMode.OFF and not self.pii_detectors:
            raise ValidationError({"pii_detectors": "Choose at least one detector, or turn PII handling off."})
        if self.api_id is not None and self.api.kind != ApiKind.AI:
            raise ValidationError({"api": f"{self.api.name} is a REST API; a model route needs an API of kind AI."})


class TargetRole(models.TextChoices):
    TARGET = "target", "Target (weighted)"
    FALLBACK = "fallback", "Fallback (in order)"


class RouteTarget(models.Model):
    route = models.ForeignKey(ModelRoute, on_delete=models.CASCADE, related_name="targets")
    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="route_targets")
    role = models.CharField(max_length=10, choices=TargetRole.choices, default=TargetRole.TARGET)
    weight = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(1_000_000)], help_text="Targets only."
    )
    position = models.PositiveSmallIntegerField(default=0, help_text="Fallback order, lowest first.")

    class Meta:
        ordering = ["route", "role", "position", "id"]
        verbose_name = "route target"
        constraints = [
            models.UniqueConstraint(fields=["route", "role", "model"], name="route_model_once_per_role"),
            models.CheckConstraint(condition=models.Q(weight__gt=0), name="route_target_weight_positive"),
        ]

    def __str__(self) -> str:
        if self.role == TargetRole.FALLBACK:
            return f"{self.route} fallback #{self.position}: {self.model}"
        return f"{self.route} target {self.model} (weight {self.weight})"


class BudgetScope(models.TextChoices):
    KEY = "key", "API key"
    APPLICATION = "application", "Application"
    TENANT = "tenant", "Tenant"


class BudgetPeriod(models.TextChoices):
    DAILY = "daily", "Daily (UTC)"
    WEEKLY = "weekly", "Weekly (ISO week, UTC)"
    MONTHLY = "monthly", "Monthly (UTC calendar month)"


SPEND_LIMIT_MAX = Decimal("100000000")  # 1e8 USD: beyond any real budget, inside the Redis micro-dollar range


class Budget(models.Model):
    """Spend, token and request limits for one API key, application or tenant, enforced by
    the gateway in Redis (``llm.budgets``); e-mails at 80 % and 100 % of the spend limit."""

    scope = models.CharField(max_length=12, choices=BudgetScope.choices)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="llm_budgets")
    application = models.ForeignKey(
        Application, null=True, blank=True, on_delete=models.CASCADE, related_name="llm_budgets"
    )
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="llm_budgets")
    period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTHLY)
    spend_limit_usd = models.DecimalField(
        max_digits=15,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.000001")), MaxValueValidator(SPEND_LIMIT_MAX)],
        help_text="USD per period; empty means no spend limit.",
    )
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(scope="key", api_key__isnull=False, application__isnull=True, tenant__isnull=True)
                    | models.Q(
                        scope="application", api_key__isnull=True, application__isnull=False, tenant__isnull=True
                    )
                    | models.Q(scope="tenant", api_key__isnull=True, application__isnull=True, tenant__isnull=False)
                ),
                name="budget_exactly_one_scope_object",
                violation_error_message="A budget names exactly one API key, application or tenant, as its scope says.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_period_display().split(' ')[0]} budget for {self.scope} {self.subject_label}"

    @property
    def scope_id(self) -> int | None:
        return {"key": self.api_key_id, "application": self.application_id, "tenant": self.tenant_id}.get(self.scope)

    @property
    def subject_label(self) -> str:
        if self.scope == BudgetScope.KEY and self.api_key_id:
            return f"{self.api_key.prefix}…"
        if self.scope == BudgetScope.APPLICATION and self.application_id:
            return self.application.name
        if self.scope == BudgetScope.TENANT and self.tenant_id:
            return self.tenant.name
        return "?"

    @property
    def owner_tenant(self) -> Tenant | None:
        """The tenant whose owners hear about this budget."""
        if self.scope == BudgetScope.KEY and self.api_key_id:
            return self.api_key.application.tenant
        if self.scope == BudgetScope.APPLICATION and self.application_id:
            return self.application.tenant
        if self.scope == BudgetScope.TENANT:
            return self.tenant
        return None

    def clean(self) -> None:
        subjects = {"key": self.api_key_id, "application": self.application_id, "tenant": self.tenant_id}
        if self.scope in subjects:
            if subjects[self.scope] is None:
                field = "api_key" if self.scope == "key" else self.scope
                raise ValidationError({field: f"A {self.scope} budget names its {self.scope}."})
            others = [name for name, value in subjects.items() if name != self.scope and value is not None]
            if others:
                raise ValidationError(f"A {self.scope} budget names only its {self.scope}, not: {', '.join(others)}.")
        if self.spend_limit_usd is None and self.tokens_per_minute is None and self.requests_per_minute is None:
            raise ValidationError("A budget sets at least one limit: spend, tokens per minute or requests per minute.")


class BudgetAlert(models.Model):
    """An 80 % or 100 % e-mail about a budget's period: the row makes it once per period."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField(choices=[(80, "80 %"), (100, "100 %")])
    spend_usd = models.DecimalField(max_digits=15, decimal_places=6)
    recipients = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-sent_at"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "period_start", "threshold"], name="one_alert_per_budget_period")
        ]

    def __str__(self) -> str:
        return f"{self.budget}: {self.threshold} % of the period from {self.period_start:%Y-%m-%d}"


class OutputMode(models.TextChoices):
    TEXT = "text", "Plain text"
    JSON = "json", "JSON matching the output schema"


class PromptApiManager(models.Manager["PromptApi"]):
    def get_queryset(self) -> models.QuerySet[PromptApi]:
        return super().get_queryset().filter(kind=ApiKind.PROMPT)


class PromptApi(Api):
    """The catalog's prompt APIs (``Api.kind == prompt``): a model plus a prompt, sold as a REST API.

    A proxy so the admin and services can speak of prompt APIs by name; plans, subscriptions,
    keys and the lifecycle are those of every API.
    """

    objects = PromptApiManager()

    class Meta:
        proxy = True
        verbose_name = "prompt API"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.kind = ApiKind.PROMPT
        super().save(*args, **kwargs)


class PromptVersion(models.Model):
    """What one version of a prompt API sends to its model route.

    ``user_template`` holds ``{{variable}}`` placeholders naming properties of
    ``input_schema``; values are substituted as data, never evaluated. The version's state,
    base path and lifecycle live on its ``ApiVersion``.
    """

    version = models.OneToOneField("portal.ApiVersion", on_delete=models.CASCADE, related_name="prompt")
    route = models.ForeignKey(
        ModelRoute,
        on_delete=models.PROTECT,
        related_name="prompt_versions",
        help_text="The model alias the prompt runs on (its targets, fallbacks, PII policy and cache apply).",
    )
    system_prompt = models.TextField(blank=True, max_length=50_000)
    user_template = models.TextField(max_length=50_000, help_text="Text with {{variable}} placeholders.")
    input_schema = models.JSONField(
        default=dict, help_text="JSON Schema (an object) of the request body: the template's typed variables."
    )
    output_mode = models.CharField(max_length=8, choices=OutputMode.choices, default=OutputMode.TEXT)
    output_schema = models.JSONField(
        default=dict, blank=True, help_text="JSON Schema the answer must satisfy (output mode JSON only)."
    )
    temperature = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1_000_000)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "prompt version"

    def __str__(self) -> str:
        return f"prompt of {self.version}"
