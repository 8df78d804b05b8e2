"""Provider self-service over REST: a team's owners and admins run the APIs it owns.

Everything is scoped to the APIs of the caller's teams where they are an owner or admin;
anything else is a 404. The provider services and the lifecycle and subscription services
decide; these views only read shapes and pass them on.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from portal.models import Api, ApiVersion, Plan, Subscription, SubscriptionState, Tenant, VersionState
from portal.rest import serializers as s
from portal.rest.scoping import ID_PATTERN
from portal.services import lifecycle, provider, subscriptions
from portal.services.access import person
from portal.services.errors import InvalidInput, NotFound
from portal.services.provider import TargetSpec

SLUG_PATTERN = r"[-a-zA-Z0-9_]{1,80}"


def _targets(data: list[dict[str, Any]]) -> list[TargetSpec]:
    return [TargetSpec(url=t["url"], weight=t["weight"], enabled=t["enabled"]) for t in data]


def _openapi(data: dict[str, Any]) -> dict[str, Any] | None:
    if "openapi" not in data:
        return None
    try:
        text = json.dumps(data["openapi"])
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidInput("The OpenAPI document holds values JSON cannot represent.") from error
    return provider.parse_openapi(text)


def _policy(data: dict[str, Any]) -> dict[str, Any]:
    return {name: data[name] for name in provider.VERSION_POLICY_FIELDS if name in data}


@extend_schema_view(
    create=extend_schema(request=s.ProviderApiCreateSerializer, responses={201: s.ProviderApiSerializer}),
)
class ProviderApiViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """The APIs your teams own, where you are an owner or admin: create them, add versions and plans."""

    serializer_class = s.ProviderApiSerializer
    queryset = Api.objects.none()
    lookup_field = "slug"
    lookup_value_regex = SLUG_PATTERN

    def get_queryset(self) -> QuerySet[Api]:
        return (
            provider.managed_apis(self.request.user)
            .prefetch_related("versions__targets", "plans")
            .order_by("slug", "pk")
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = s.ProviderApiCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = Tenant.objects.filter(
            slug=data.validated_data["tenant"], memberships__user=person(request.user)
        ).first()
        if tenant is None:
            raise NotFound(f"You are not a member of a team {data.validated_data['tenant']!r}.")
        api = provider.create_api(
            tenant,
            actor=request.user,
            slug=data.validated_data["slug"],
            name=data.validated_data["name"],
            description=data.validated_data["description"],
            visibility=data.validated_data["visibility"],
        )
        return Response(s.ProviderApiSerializer(api).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.ProviderVersionCreateSerializer,
        responses={201: s.ProviderVersionSerializer},
        description="A draft version with its upstream targets and policy; publish it with a transition.",
    )
    @action(detail=True, methods=["post"])
    def versions(self, request: Request, slug: str | None = None) -> Response:
        api = self.get_object()
        data = s.ProviderVersionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        version = provider.create_version(
            api,
            actor=request.user,
            version=values["version"],
            base_path=values["base_path"],
            targets=_targets(values["targets"]),
            openapi=_openapi(values),
            **_policy(values),
        )
        return Response(s.ProviderVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ProviderPlanWriteSerializer, responses={201: s.ProviderPlanSerializer})
    @action(detail=True, methods=["post"])
    def plans(self, request: Request, slug: str | None = None) -> Response:
        api = self.get_object()
        data = s.ProviderPlanWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        plan = provider.create_plan(api, actor=request.user, **data.validated_data)
        return Response(s.ProviderPlanSerializer(plan).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    partial_update=extend_schema(request=s.ProviderVersionUpdateSerializer, responses=s.ProviderVersionSerializer)
)
class ProviderVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Versions of the APIs you run: change their targets and policy, move their lifecycle."""

    serializer_class = s.ProviderVersionSerializer
    queryset = ApiVersion.objects.none()
    lookup_value_regex = ID_PATTERN
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[ApiVersion]:
        return (
            ApiVersion.objects.filter(api__in=provider.managed_apis(self.request.user))
            .select_related("api")
            .prefetch_related("targets")
            .order_by("api__slug", "version", "pk")
        )

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        data = s.ProviderVersionUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        version = provider.update_version(
            version,
            actor=request.user,
            targets=_targets(values["targets"]) if "targets" in values else None,
            openapi=_openapi(values),
            base_path=values.get("base_path"),
            **_policy(values),
        )
        return Response(s.ProviderVersionSerializer(self.get_queryset().get(pk=version.pk)).data)

    @extend_schema(
        request=s.TransitionSerializer,
        responses=s.ProviderVersionSerializer,
        description="draft → published → deprecated (with a sunset date) → retired; deprecated → published.",
    )
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, pk: str | None = None) -> Response:
        version = self.get_object()
        data = s.TransitionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        target = data.validated_data["state"]
        extra: dict[str, Any] = {}
        if target == VersionState.DEPRECATED:
            extra = {"sunset_at": data.validated_data["sunset_at"], "reason": data.validated_data["reason"]}
        elif target == VersionState.RETIRED:
            extra = {"reason": data.validated_data["reason"]}
        lifecycle.set_version_state(version, target, actor=request.user, **extra)
        return Response(s.ProviderVersionSerializer(self.get_queryset().get(pk=version.pk)).data)


@extend_schema_view(
    partial_update=extend_schema(request=s.ProviderPlanUpdateSerializer, responses=s.ProviderPlanSerializer)
)
class ProviderPlanViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Plans of the APIs you run: change their limits, or close them to new subscriptions."""

    serializer_class = s.ProviderPlanSerializer
    queryset = Plan.objects.none()
    lookup_value_regex = ID_PATTERN
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[Plan]:
        return (
            Plan.objects.filter(api__in=provider.managed_apis(self.request.user))
            .select_related("api")
            .order_by("api__slug", "name", "pk")
        )

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        plan = self.get_object()
        data = s.ProviderPlanUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        plan = provider.update_plan(plan, actor=request.user, **data.validated_data)
        return Response(s.ProviderPlanSerializer(plan).data)


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("state", str, enum=SubscriptionState.values, description="Only in this state.")]
    )
)
class ProviderSubscriptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Subscriptions to the APIs you run, pending first: approve or reject them."""

    serializer_class = s.ProviderSubscriptionSerializer
    queryset = Subscription.objects.none()
    lookup_value_regex = ID_PATTERN

    def get_queryset(self) -> QuerySet[Subscription]:
        found = provider.subscription_requests(self.request.user)
        if self.action == "list" and self.request.query_params.get("state") in SubscriptionState.values:
            found = found.filter(state=self.request.query_params["state"])
        return found

    def _decide(self, request: Request, decision: Any) -> Response:
        data = s.DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub = decision(self.get_object(), actor=request.user, reason=data.validated_data["reason"])
        return Response(s.ProviderSubscriptionSerializer(sub).data)

    @extend_schema(request=s.DecisionSerializer, responses=s.ProviderSubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, subscriptions.approve_subscription)

    @extend_schema(
        request=s.DecisionSerializer, responses=s.ProviderSubscriptionSerializer, description="Needs a reason."
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, subscriptions.reject_subscription)
