"""What the REST API reads and writes. Output serializers mirror the models; input
serializers only check shapes: the rules are the services'."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.models import (
    Api,
    ApiKey,
    ApiVersion,
    Application,
    PersonalAccessToken,
    Plan,
    Subscription,
    SubscriptionState,
    VersionState,
)
from portal.models.catalog import LoadBalancing, Visibility
from portal.services.catalog import visible_versions

MAX_GRACE_SECONDS = 30 * 24 * 3600
MAX_ID = 2**63 - 1  # beyond this a database cannot hold the id: refuse it as input, do not crash


class PlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = [
            "id",
            "name",
            "description",
            "requests_per_second",
            "requests_per_minute",
            "daily_quota",
            "monthly_quota",
            "requires_approval",
        ]


class VersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiVersion
        fields = ["id", "version", "base_path", "state", "published_at", "deprecated_at", "sunset_at"]


class StaffVersionSerializer(VersionSerializer):
    api: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta(VersionSerializer.Meta):
        fields = ["id", "api", *VersionSerializer.Meta.fields[1:], "retired_at"]


class ApiSerializer(serializers.ModelSerializer):
    tags: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    versions = serializers.SerializerMethodField(help_text="Published and deprecated versions only.")
    plans = serializers.SerializerMethodField(help_text="Plans open to new subscriptions.")

    class Meta:
        model = Api
        fields = ["slug", "name", "description", "tags", "versions", "plans"]

    @extend_schema_field(VersionSerializer(many=True))
    def get_versions(self, api: Api) -> Any:
        return VersionSerializer(visible_versions(api), many=True).data

    @extend_schema_field(PlanSerializer(many=True))
    def get_plans(self, api: Api) -> Any:
        return PlanSerializer(api.plans.filter(is_active=True).order_by("requires_approval", "name"), many=True).data


class ApplicationSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugField(source="tenant.slug", read_only=True)

    class Meta:
        model = Application
        fields = ["id", "name", "description", "tenant", "created_at"]


class ApplicationCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tenant = serializers.SlugField(
        required=False, help_text="Slug of the team that owns the application; needed when you are in several."
    )


class ApplicationUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class ApiKeySerializer(serializers.ModelSerializer):
    application: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(read_only=True)
    state = serializers.SerializerMethodField()
    rotated_from: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="prefix", read_only=True, allow_null=True, help_text="Prefix of the key this one replaced."
    )

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "application",
            "prefix",
            "name",
            "state",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "rotated_from",
        ]

    def get_state(self, key: ApiKey) -> str:
        if key.is_revoked:
            return "revoked"
        return "expired" if key.is_expired() else "active"


class NewApiKeySerializer(ApiKeySerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown this once: Portico keeps only a hash.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "secret"]


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=80, required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class RotateSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=MAX_GRACE_SECONDS,
        help_text="How long the old secret keeps working; the server's default when left out.",
    )


class SubscriptionSerializer(serializers.ModelSerializer):
    application: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(read_only=True)
    api: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    plan: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(read_only=True)
    plan_name = serializers.CharField(source="plan.name", read_only=True)
    state = serializers.ChoiceField(choices=SubscriptionState.choices, read_only=True)

    class Meta:
        model = Subscription
        fields = ["id", "application", "api", "plan", "plan_name", "state", "requested_at", "decided_at", "reason"]


class SubscriptionRequestSerializer(serializers.Serializer):
    application = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="Id of one of your applications.")
    api = serializers.SlugField(help_text="Slug of an API in the catalog.")
    plan = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="Id of one of the API's plans.")


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", help_text="Required to reject.")


class TransitionSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=VersionState.choices, help_text="The state to move the version to (published, deprecated or retired)."
    )
    sunset_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="For deprecation; 90 days from now when left out."
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class AccessTokenSerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()

    class Meta:
        model = PersonalAccessToken
        fields = ["id", "name", "prefix", "state", "created_at", "last_used_at", "expires_at", "revoked_at"]

    def get_state(self, token: PersonalAccessToken) -> str:
        if token.revoked_at:
            return "revoked"
        return "expired" if token.expires_at and token.expires_at <= timezone.now() else "active"


class NewAccessTokenSerializer(AccessTokenSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown this once: Portico keeps only a hash.")

    class Meta(AccessTokenSerializer.Meta):
        fields = [*AccessTokenSerializer.Meta.fields, "secret"]


class AccessTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=80)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


# --- Provider self-service: a team's owners and admins run the APIs it owns -----------------

MAX_INT32 = 2**31 - 1  # the database's integer columns: larger limits are refused, not overflowed


class TargetSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=300, help_text="http:// or https:// URL of the upstream.")
    weight = serializers.IntegerField(min_value=1, max_value=1_000_000, default=100)
    enabled = serializers.BooleanField(default=True)


class ProviderVersionSerializer(serializers.ModelSerializer):
    api: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    targets = TargetSerializer(many=True, read_only=True)

    class Meta:
        model = ApiVersion
        fields = [
            "id",
            "api",
            "version",
            "base_path",
            "state",
            "targets",
            "load_balancing",
            "connect_timeout_ms",
            "read_timeout_ms",
            "total_timeout_ms",
            "retries",
            "cache_ttl_seconds",
            "published_at",
            "deprecated_at",
            "sunset_at",
            "retired_at",
        ]


class ProviderPlanSerializer(PlanSerializer):
    api: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta(PlanSerializer.Meta):
        fields = ["id", "api", *PlanSerializer.Meta.fields[1:], "is_active"]


class ProviderApiSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugField(source="owner.slug", read_only=True)
    versions = ProviderVersionSerializer(many=True, read_only=True)
    plans = ProviderPlanSerializer(many=True, read_only=True)

    class Meta:
        model = Api
        fields = ["slug", "name", "description", "visibility", "tenant", "versions", "plans"]


class ProviderApiCreateSerializer(serializers.Serializer):
    tenant = serializers.SlugField(max_length=60, help_text="Slug of the team that will own the API.")
    slug = serializers.SlugField(max_length=80)
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PUBLIC)


class _VersionPolicySerializer(serializers.Serializer):
    connect_timeout_ms = serializers.IntegerField(min_value=1, max_value=300_000, required=False)
    read_timeout_ms = serializers.IntegerField(min_value=1, max_value=300_000, required=False)
    total_timeout_ms = serializers.IntegerField(min_value=1, max_value=300_000, required=False)
    retries = serializers.IntegerField(min_value=0, max_value=5, required=False)
    cache_ttl_seconds = serializers.IntegerField(min_value=0, max_value=7 * 86400, required=False)
    load_balancing = serializers.ChoiceField(choices=LoadBalancing.choices, required=False)
    openapi = serializers.JSONField(
        required=False, help_text="An OpenAPI 3 document (an object with 'openapi' and 'paths'), at most 1 MiB."
    )


class ProviderVersionCreateSerializer(_VersionPolicySerializer):
    version = serializers.CharField(max_length=40)
    base_path = serializers.CharField(max_length=200)
    targets: serializers.ListSerializer[Any] = serializers.ListSerializer(child=TargetSerializer(), max_length=16)


class ProviderVersionUpdateSerializer(_VersionPolicySerializer):
    base_path = serializers.CharField(max_length=200, required=False, help_text="Drafts only.")
    targets: serializers.ListSerializer[Any] = serializers.ListSerializer(
        child=TargetSerializer(), max_length=16, required=False, help_text="Replaces every target."
    )


class ProviderPlanWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=60)
    description = serializers.CharField(max_length=300, required=False, allow_blank=True)
    requests_per_second = serializers.IntegerField(min_value=1, max_value=MAX_INT32, required=False, allow_null=True)
    requests_per_minute = serializers.IntegerField(min_value=1, max_value=MAX_INT32, required=False, allow_null=True)
    daily_quota = serializers.IntegerField(min_value=1, max_value=MAX_INT32, required=False, allow_null=True)
    monthly_quota = serializers.IntegerField(min_value=1, max_value=MAX_INT32, required=False, allow_null=True)
    requires_approval = serializers.BooleanField(required=False)
    is_active = serializers.BooleanField(required=False)


class ProviderPlanUpdateSerializer(ProviderPlanWriteSerializer):
    name = serializers.CharField(max_length=60, required=False)


class ProviderSubscriptionSerializer(SubscriptionSerializer):
    tenant = serializers.SlugField(source="application.tenant.slug", read_only=True)
    application_name = serializers.CharField(source="application.name", read_only=True)

    class Meta(SubscriptionSerializer.Meta):
        fields = [*SubscriptionSerializer.Meta.fields, "tenant", "application_name"]
