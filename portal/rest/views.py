"""The management REST API. Thin: scope the query to the caller's tenants, call a service."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from portal.models import Api, ApiKey, ApiVersion, Application, Membership, Role, Subscription
from portal.rest import serializers as s
from portal.services import keys, lifecycle, subscriptions
from portal.services.access import require_role
from portal.services.catalog import visible_apis_for
from portal.services.errors import InvalidInput, NotFound


def member_tenants(user):
    if not user.is_authenticated:
        return Membership.objects.none().values_list("tenant_id", flat=True)
    return Membership.objects.filter(user=user).values_list("tenant_id", flat=True)


class IsStaff(permissions.BasePermission):
    def has_permission(self, request, view):
        return bool(request.user and request.user.is_staff)


class CatalogViewSet(viewsets.ReadOnlyModelViewSet):
    """Published and deprecated APIs the caller may see."""

    serializer_class = s.ApiSerializer
    queryset = Api.objects.none()  # for the schema; get_queryset scopes to the caller
    lookup_field = "slug"

    def get_queryset(self):
        return visible_apis_for(member_tenants(self.request.user)).order_by("name").prefetch_related("tags")


class ApplicationViewSet(viewsets.ModelViewSet):
    serializer_class = s.ApplicationSerializer
    queryset = Application.objects.none()
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return (
            Application.objects.filter(tenant_id__in=member_tenants(self.request.user))
            .select_related("tenant")
            .order_by("name")
        )

    def perform_create(self, serializer):
        slug = serializer.validated_data.pop("tenant", {}).get("slug")
        memberships = Membership.objects.filter(user=self.request.user).select_related("tenant")
        membership = memberships.filter(tenant__slug=slug).first() if slug else memberships.first()
        if membership is None:
            raise NotFound("No such team.")
        require_role(self.request.user, membership.tenant, Role.DEVELOPER)
        name = serializer.validated_data["name"]
        if Application.objects.filter(tenant=membership.tenant, name=name).exists():
            raise InvalidInput(f"Your team already has an application named {name!r}.")
        serializer.save(tenant=membership.tenant, created_by=self.request.user)

    def perform_update(self, serializer):
        require_role(self.request.user, serializer.instance.tenant, Role.DEVELOPER)
        serializer.validated_data.pop("tenant", None)
        serializer.save()

    def perform_destroy(self, instance):
        require_role(self.request.user, instance.tenant, Role.ADMIN)
        instance.delete()

    @extend_schema(responses=s.ApiKeySerializer(many=True))
    @action(detail=True, methods=["get"])
    def keys(self, request, pk=None):
        app = self.get_object()
        return Response(s.ApiKeySerializer(app.keys.all(), many=True).data)

    @extend_schema(request=s.ApiKeySerializer, responses={201: s.NewApiKeySerializer})
    @keys.mapping.post
    def create_key(self, request, pk=None):
        app = self.get_object()
        data = s.ApiKeySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, secret = keys.create_api_key(
            app,
            request.user,
            name=data.validated_data.get("name", ""),
            expires_at=data.validated_data.get("expires_at"),
        )
        key.secret = secret
        return Response(s.NewApiKeySerializer(key).data, status=status.HTTP_201_CREATED)


class ApiKeyViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = s.ApiKeySerializer
    queryset = ApiKey.objects.none()

    def get_queryset(self):
        return ApiKey.objects.filter(application__tenant_id__in=member_tenants(self.request.user))

    @extend_schema(request=None, responses={201: s.NewApiKeySerializer})
    @action(detail=True, methods=["post"])
    def rotate(self, request, pk=None):
        new, secret = keys.rotate_api_key(self.get_object(), request.user)
        new.secret = secret
        return Response(s.NewApiKeySerializer(new).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        return Response(s.ApiKeySerializer(keys.revoke_api_key(self.get_object(), request.user)).data)


class SubscriptionViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = s.SubscriptionSerializer
    queryset = Subscription.objects.none()

    def get_queryset(self):
        mine = Subscription.objects.select_related("api", "plan", "application")
        if self.request.user.is_staff and self.action in ("approve", "reject", "list", "retrieve"):
            scope = self.request.query_params.get("scope")
            if self.action in ("approve", "reject") or scope == "all":
                return mine.order_by("-requested_at")
        return mine.filter(application__tenant_id__in=member_tenants(self.request.user)).order_by("-requested_at")

    def create(self, request, *args, **kwargs):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        application = data.validated_data["application"]
        if application.tenant_id not in set(member_tenants(request.user)):
            raise NotFound("No such application.")
        sub, created = subscriptions.request_subscription(
            application, data.validated_data["api"], data.validated_data["plan"], request.user
        )
        return Response(
            s.SubscriptionSerializer(sub).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(request=None, responses=s.SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return Response(
            s.SubscriptionSerializer(subscriptions.revoke_subscription(self.get_object(), request.user)).data
        )

    @extend_schema(request=s.DecisionSerializer, responses=s.SubscriptionSerializer)
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated, IsStaff])
    def approve(self, request, pk=None):
        data = s.DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub = subscriptions.approve_subscription(self.get_object(), request.user, reason=data.validated_data["reason"])
        return Response(s.SubscriptionSerializer(sub).data)

    @extend_schema(request=s.DecisionSerializer, responses=s.SubscriptionSerializer)
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated, IsStaff])
    def reject(self, request, pk=None):
        data = s.DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub = subscriptions.reject_subscription(self.get_object(), request.user, reason=data.validated_data["reason"])
        return Response(s.SubscriptionSerializer(sub).data)


class VersionViewSet(viewsets.GenericViewSet):
    """Lifecycle transitions, for Portico administrators."""

    queryset = ApiVersion.objects.select_related("api")
    serializer_class = s.VersionSerializer
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(request=s.TransitionSerializer, responses=s.VersionSerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        data = s.TransitionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = get_object_or_404(ApiVersion, pk=pk)
        extra = {}
        if data.validated_data["state"] == "deprecated":
            extra = {"sunset_at": data.validated_data["sunset_at"], "reason": data.validated_data["reason"]}
        elif data.validated_data["state"] == "retired":
            extra = {"reason": data.validated_data["reason"]}
        version = lifecycle.set_version_state(version, data.validated_data["state"], request.user, **extra)
        return Response(s.VersionSerializer(version).data)
