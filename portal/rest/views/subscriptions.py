from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from portal.models import Application, Plan, Subscription, SubscriptionState
from portal.rest import serializers as s
from portal.rest.scoping import ID_PATTERN, IsStaff, id_list, member_tenant_ids
from portal.services import subscriptions
from portal.services.catalog import visible_apis_for
from portal.services.errors import NotFound

# Staff act on every tenant's subscriptions for these; everyone else only within their teams.
STAFF_WIDE_ACTIONS = ("approve", "reject", "cancel", "retrieve")


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=SubscriptionState.values, description="Only subscriptions in it."),
            OpenApiParameter("application", int, description="Only this application's subscriptions."),
            OpenApiParameter("scope", str, enum=["all"], description="Staff only: every tenant's subscriptions."),
        ]
    ),
    create=extend_schema(
        request=s.SubscriptionRequestSerializer,
        responses={201: s.SubscriptionSerializer, 200: s.SubscriptionSerializer},
        description=(
            "Subscribe an application to an API on a plan. Plans without approval are active at once; "
            "others wait for an administrator. Asking again returns the live subscription (200)."
        ),
    ),
)
class SubscriptionViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Your applications' subscriptions; administrators also decide pending ones."""

    serializer_class = s.SubscriptionSerializer
    queryset = Subscription.objects.none()
    lookup_value_regex = ID_PATTERN

    def get_queryset(self) -> QuerySet[Subscription]:
        found = Subscription.objects.select_related("api", "plan", "application")
        params = self.request.query_params
        everyone = self.action in STAFF_WIDE_ACTIONS or (self.action == "list" and params.get("scope") == "all")
        if not (everyone and self.request.user.is_staff):
            found = found.filter(application__tenant_id__in=member_tenant_ids(self.request.user))
        if self.action == "list":
            if params.get("state") in SubscriptionState.values:
                found = found.filter(state=params["state"])
            if "application" in params:
                found = found.filter(application_id__in=id_list(params["application"]))
        return found.order_by("-requested_at", "-pk")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = s.SubscriptionRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenants = member_tenant_ids(request.user)
        application = Application.objects.filter(pk=data.validated_data["application"], tenant_id__in=tenants).first()
        if application is None:
            raise NotFound("No such application.")
        api = visible_apis_for(tenants).filter(slug=data.validated_data["api"]).first()
        if api is None:
            raise NotFound("No such API in the catalog.")
        plan = Plan.objects.filter(pk=data.validated_data["plan"], api=api).first()
        if plan is None:
            raise NotFound(f"{api.name} has no such plan.")
        sub, created = subscriptions.request_subscription(application, api, plan, actor=request.user)
        return Response(
            s.SubscriptionSerializer(sub).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    def _decide(self, request: Request, decision: Callable[..., Subscription]) -> Response:
        """Apply a decision service (approve, reject, revoke) with the reason given."""
        data = s.DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub = decision(self.get_object(), actor=request.user, reason=data.validated_data["reason"])
        return Response(s.SubscriptionSerializer(sub).data)

    @extend_schema(
        request=s.DecisionSerializer,
        responses=s.SubscriptionSerializer,
        description="End an approved subscription (a team admin, or staff).",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, subscriptions.revoke_subscription)

    @extend_schema(request=s.DecisionSerializer, responses=s.SubscriptionSerializer, description="Staff only.")
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated, IsStaff])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, subscriptions.approve_subscription)

    @extend_schema(
        request=s.DecisionSerializer, responses=s.SubscriptionSerializer, description="Staff only; needs a reason."
    )
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated, IsStaff])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, subscriptions.reject_subscription)
