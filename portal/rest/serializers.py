from rest_framework import serializers

from portal.models import Api, ApiKey, ApiVersion, Application, Plan, Subscription


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
        fields = ["id", "version", "base_path", "state", "sunset_at", "published_at"]


class ApiSerializer(serializers.ModelSerializer):
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    versions = serializers.SerializerMethodField()
    plans = serializers.SerializerMethodField()

    class Meta:
        model = Api
        fields = ["slug", "name", "description", "tags", "versions", "plans"]

    def get_versions(self, api) -> list[dict]:
        from portal.services.catalog import visible_versions

        return VersionSerializer(visible_versions(api), many=True).data

    def get_plans(self, api) -> list[dict]:
        return PlanSerializer(api.plans.filter(is_active=True), many=True).data


class ApplicationSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugField(source="tenant.slug", required=False, help_text="Defaults to your first team.")

    class Meta:
        model = Application
        fields = ["id", "name", "description", "tenant", "created_at"]
        read_only_fields = ["id", "created_at"]


class SubscriptionSerializer(serializers.ModelSerializer):
    api = serializers.SlugRelatedField(slug_field="slug", queryset=Api.objects.all())
    application = serializers.PrimaryKeyRelatedField(queryset=Application.objects.all())
    plan = serializers.PrimaryKeyRelatedField(queryset=Plan.objects.all())

    class Meta:
        model = Subscription
        fields = ["id", "application", "api", "plan", "state", "requested_at", "decided_at", "reason"]
        read_only_fields = ["id", "state", "requested_at", "decided_at", "reason"]


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "prefix", "name", "created_at", "expires_at", "revoked_at", "last_used_at"]
        read_only_fields = ["id", "prefix", "created_at", "revoked_at", "last_used_at"]


class NewApiKeySerializer(ApiKeySerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once: only a hash is kept.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "secret"]


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class TransitionSerializer(serializers.Serializer):
    state = serializers.CharField(help_text="published, deprecated or retired")
    sunset_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    reason = serializers.CharField(required=False, allow_blank=True, default="")
