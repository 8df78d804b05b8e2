"""What the LLM management API reads and writes. Output serializers never carry a
credential (keys show ``last4`` only); input serializers check shapes and bounds, the rules
are ``llm.services``'."""

from __future__ import annotations

from typing import Any, ClassVar

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from llm.models import (
    Budget,
    BudgetPeriod,
    BudgetScope,
    Capability,
    KeyState,
    Model,
    ModelRoute,
    PiiDetector,
    PiiMode,
    Provider,
    ProviderKey,
    ProviderKind,
    TargetRole,
)
from llm.services import SECRET_MAX
from portal.models.catalog import Api
from portal.rest.serializers import MAX_ID

MAX_INT32 = 2**31 - 1


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise serializers.ValidationError("Text may not contain NUL characters.")


class Text(serializers.CharField):
    """A CharField that refuses NUL (PostgreSQL cannot store it)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.append(_no_nul)


class WithLabelField(serializers.Serializer):
    # A serializer with a ``label`` input, declared in ``get_fields`` rather than as a class
    # attribute: on the class, ``label`` would be the serializer's own caption (``Field.label``).
    # (A comment, not a docstring: the API schema shows docstrings as descriptions.)

    label_field: ClassVar[dict[str, Any]] = {}

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["label"] = Text(max_length=80, required=False, allow_blank=True, **self.label_field)
        return fields


# -- providers ---------------------------------------------------------------------------------


class ProviderSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=ProviderKind.choices, read_only=True)

    class Meta:
        model = Provider
        fields = ["id", "name", "kind", "base_url", "azure_api_version", "enabled", "created_at", "updated_at"]
        ref_name = "LlmProvider"


class ProviderWriteSerializer(serializers.Serializer):
    name = Text(max_length=80)
    kind = serializers.ChoiceField(choices=ProviderKind.choices)
    base_url = Text(
        max_length=300, required=False, allow_blank=True, default="", help_text="Empty: the kind's public endpoint."
    )
    azure_api_version = Text(max_length=32, required=False, allow_blank=True, default="")
    enabled = serializers.BooleanField(required=False, default=True)

    class Meta:
        ref_name = "LlmProviderWrite"


# -- keys --------------------------------------------------------------------------------------


class ProviderKeySerializer(serializers.ModelSerializer):
    provider: serializers.PrimaryKeyRelatedField[Provider] = serializers.PrimaryKeyRelatedField(read_only=True)
    state = serializers.ChoiceField(choices=KeyState.choices, read_only=True)
    last4 = serializers.CharField(
        read_only=True, help_text="The credential's last four characters (empty for short ones); never the secret."
    )

    class Meta:
        model = ProviderKey
        fields = [
            "id",
            "provider",
            "label",
            "last4",
            "priority",
            "state",
            "state_until",
            "expires_at",
            "created_at",
            "updated_at",
        ]
        ref_name = "LlmProviderKey"


class ProviderKeyCreateSerializer(WithLabelField):
    """A credential for a provider's pool."""

    label_field = {"default": ""}

    provider = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="Id of the provider.")
    secret = Text(
        max_length=SECRET_MAX,
        write_only=True,
        style={"input_type": "password"},
        help_text="The provider's API key. Stored encrypted; never shown again.",
    )
    priority = serializers.IntegerField(min_value=0, max_value=1000, required=False, default=0)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    class Meta:
        ref_name = "LlmProviderKeyCreate"


class ProviderKeyUpdateSerializer(WithLabelField):
    """A key's label, priority and expiry (its secret is write-once)."""

    priority = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    class Meta:
        ref_name = "LlmProviderKeyUpdate"


class KeyStateReasonSerializer(serializers.Serializer):
    reason = Text(max_length=500, required=False, allow_blank=True, default="")

    class Meta:
        ref_name = "LlmKeyStateReason"


# -- models ------------------------------------------------------------------------------------


def _price() -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=0,
        allow_null=True,
        required=False,
        default=None,
        help_text="USD per million tokens; null = unknown (cost recorded as unknown, never 0).",
    )


class ModelSerializer(serializers.ModelSerializer):
    provider: serializers.PrimaryKeyRelatedField[Provider] = serializers.PrimaryKeyRelatedField(read_only=True)
    capabilities = serializers.ListField(child=serializers.ChoiceField(choices=Capability.choices), read_only=True)

    class Meta:
        model = Model
        fields = [
            "id",
            "provider",
            "upstream_name",
            "display_name",
            "input_price",
            "output_price",
            "cached_input_price",
            "context_window",
            "capabilities",
            "created_at",
            "updated_at",
        ]
        ref_name = "LlmModel"


class ModelUpdateSerializer(serializers.Serializer):
    """A model's changeable fields (a model stays on its provider)."""

    upstream_name = Text(max_length=200, help_text="The provider's model name (Azure: the deployment).")
    display_name = Text(max_length=120, required=False, allow_blank=True, default="")
    input_price = _price()
    output_price = _price()
    cached_input_price = _price()
    context_window = serializers.IntegerField(
        min_value=1, max_value=MAX_INT32, required=False, allow_null=True, default=None
    )
    capabilities = serializers.ListField(
        child=serializers.ChoiceField(choices=Capability.choices), required=False, max_length=10, default=["chat"]
    )

    class Meta:
        ref_name = "LlmModelUpdate"


class ModelWriteSerializer(ModelUpdateSerializer):
    """A new model: its provider, then the same fields."""

    provider = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="Id of the provider.")

    class Meta:
        ref_name = "LlmModelWrite"


# -- routes ------------------------------------------------------------------------------------


class RouteTargetSerializer(serializers.Serializer):
    model = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="Id of a model.")
    weight = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, default=100)

    class Meta:
        ref_name = "LlmRouteTarget"


class RouteSerializer(serializers.ModelSerializer):
    api: serializers.SlugRelatedField[Api] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    targets = serializers.SerializerMethodField(help_text="Weighted targets (A/B split by weight).")
    fallbacks = serializers.SerializerMethodField(help_text="Model ids tried in this order when the targets fail.")
    pii_mode = serializers.ChoiceField(choices=PiiMode.choices, read_only=True)
    pii_detectors = serializers.ListField(child=serializers.ChoiceField(choices=PiiDetector.choices), read_only=True)

    class Meta:
        model = ModelRoute
        fields = [
            "id",
            "alias",
            "api",
            "targets",
            "fallbacks",
            "timeout_seconds",
            "first_byte_timeout_seconds",
            "retries",
            "cache_ttl_seconds",
            "cache_nondeterministic",
            "pii_mode",
            "pii_detectors",
            "deny_list",
            "capture",
            "default_max_tokens",
            "created_at",
            "updated_at",
        ]
        ref_name = "LlmRoute"

    @extend_schema_field(RouteTargetSerializer(many=True))
    def get_targets(self, route: ModelRoute) -> list[dict[str, int]]:
        return [{"model": t.model_id, "weight": t.weight} for t in route.targets.all() if t.role == TargetRole.TARGET]

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_fallbacks(self, route: ModelRoute) -> list[int]:
        members = [t for t in route.targets.all() if t.role == TargetRole.FALLBACK]
        return [t.model_id for t in sorted(members, key=lambda t: (t.position, t.pk))]


class RouteWriteSerializer(serializers.Serializer):
    alias = Text(max_length=100, help_text="The public model name clients send, e.g. gpt-4o-mini or claude:fast.")
    api = serializers.SlugField(max_length=80, help_text="Slug of the AI API that publishes the route.")
    targets: serializers.ListSerializer[dict[str, int]] = serializers.ListSerializer(
        child=RouteTargetSerializer(), max_length=20
    )
    fallbacks = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, default=list, max_length=20
    )
    timeout_seconds = serializers.FloatField(min_value=0.1, max_value=3600, required=False)
    first_byte_timeout_seconds = serializers.FloatField(min_value=0.1, max_value=3600, required=False)
    retries = serializers.IntegerField(min_value=0, max_value=5, required=False)
    cache_ttl_seconds = serializers.IntegerField(min_value=0, max_value=30 * 86400, required=False)
    cache_nondeterministic = serializers.BooleanField(required=False)
    pii_mode = serializers.ChoiceField(choices=PiiMode.choices, required=False)
    pii_detectors = serializers.ListField(
        child=serializers.ChoiceField(choices=PiiDetector.choices), required=False, max_length=10
    )
    deny_list = Text(required=False, allow_blank=True, max_length=100_000, help_text="One word or /regex/ per line.")
    capture = serializers.BooleanField(required=False)
    default_max_tokens = serializers.IntegerField(min_value=1, max_value=10_000_000, required=False)

    class Meta:
        ref_name = "LlmRouteWrite"


# -- budgets -----------------------------------------------------------------------------------


class BudgetSerializer(serializers.ModelSerializer):
    scope = serializers.ChoiceField(choices=BudgetScope.choices, read_only=True)
    period = serializers.ChoiceField(choices=BudgetPeriod.choices, read_only=True)
    subject = serializers.SerializerMethodField(help_text="Id of the API key, application or tenant.")
    subject_name = serializers.SerializerMethodField(help_text="Key prefix, application name or tenant name.")
    tenant = serializers.SerializerMethodField(help_text="Slug of the tenant the budget's subject belongs to.")

    class Meta:
        model = Budget
        fields = [
            "id",
            "scope",
            "subject",
            "subject_name",
            "tenant",
            "period",
            "spend_limit_usd",
            "tokens_per_minute",
            "requests_per_minute",
            "created_at",
            "updated_at",
        ]
        ref_name = "LlmBudget"

    def get_subject(self, budget: Budget) -> int:
        return budget.scope_id or 0

    def get_subject_name(self, budget: Budget) -> str:
        return budget.subject_label

    def get_tenant(self, budget: Budget) -> str:
        tenant = budget.owner_tenant
        return tenant.slug if tenant else ""


class BudgetCreateSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=BudgetScope.choices)
    subject = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, help_text="Id of the API key, application or tenant the scope names."
    )
    period = serializers.ChoiceField(choices=BudgetPeriod.choices, required=False, default=BudgetPeriod.MONTHLY)
    spend_limit_usd = serializers.DecimalField(
        max_digits=15, decimal_places=6, min_value=0, allow_null=True, required=False, default=None
    )
    tokens_per_minute = serializers.IntegerField(
        min_value=1, max_value=MAX_INT32, allow_null=True, required=False, default=None
    )
    requests_per_minute = serializers.IntegerField(
        min_value=1, max_value=MAX_INT32, allow_null=True, required=False, default=None
    )

    class Meta:
        ref_name = "LlmBudgetCreate"


class BudgetUpdateSerializer(serializers.Serializer):
    period = serializers.ChoiceField(choices=BudgetPeriod.choices, required=False)
    spend_limit_usd = serializers.DecimalField(
        max_digits=15, decimal_places=6, min_value=0, allow_null=True, required=False
    )
    tokens_per_minute = serializers.IntegerField(min_value=1, max_value=MAX_INT32, allow_null=True, required=False)
    requests_per_minute = serializers.IntegerField(min_value=1, max_value=MAX_INT32, allow_null=True, required=False)

    class Meta:
        ref_name = "LlmBudgetUpdate"
