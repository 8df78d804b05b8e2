"""What the REST API reads and writes. Output serializers mirror the models; input
serializers only check shapes: the rules are the services'."""

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
    api = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta(VersionSerializer.Meta):
        fields = ["id", "api", *VersionSerializer.Meta.fields[1:], "retired_at"]


class ApiSerializer(serializers.ModelSerializer):
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    versions = serializers.SerializerMethodField(help_text="Published and deprecated versions only.")
    plans = serializers.SerializerMethodField(help_text="Plans open to new subscriptions.")

    class Meta:
        model = Api
        fields = ["slug", "name", "description", "tags", "versions", "plans"]

    @extend_schema_field(VersionSerializer(many=True))
    def get_versions(self, api):
        return VersionSerializer(visible_versions(api), many=True).data

    @extend_schema_field(PlanSerializer(many=True))
    def get_plans(self, api):
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
    application = serializers.PrimaryKeyRelatedField(read_only=True)
    state = serializers.SerializerMethodField()
    rotated_from = serializers.SlugRelatedField(
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

    def get_state(self, key) -> str:
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
    application = serializers.PrimaryKeyRelatedField(read_only=True)
    api = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    plan = serializers.PrimaryKeyRelatedField(read_only=True)
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

    def get_state(self, token) -> str:
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
