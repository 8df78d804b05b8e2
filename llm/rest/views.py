"""The LLM management API under /api/v1/llm/: staff run providers, their key pools, models,
routes and budgets; tenant members read their own budgets. Every write goes through
``llm.services``; errors read ``{"error": {"code", "message"}}`` like the rest of the API."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models
from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from llm import services
from llm.models import Budget, BudgetScope, Model, ModelRoute, Provider, ProviderKey
from llm.rest import serializers as s
from portal.models import ApiKey, Application, Tenant
from portal.models.catalog import Api
from portal.rest.scoping import ID_PATTERN, IsStaff, id_or_none, member_tenant_ids
from portal.services.errors import InvalidInput

M = TypeVar("M", bound=models.Model)


def _valid(serializer_class: type[Serializer], request: Request, *, partial: bool = False) -> dict[str, Any]:
    data = serializer_class(data=request.data, partial=partial)
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


def _existing(model: type[M], pk: int, what: str, queryset: QuerySet[M] | None = None) -> M:
    """An object named by id in a request body: missing is the client's input error (400)."""
    found = (queryset if queryset is not None else model._default_manager.all()).filter(pk=pk).first()
    if found is None:
        raise InvalidInput(f"There is no {what} with id {pk}.")
    return found


class StaffViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    lookup_value_regex = ID_PATTERN
    permission_classes = [permissions.IsAuthenticated, IsStaff]


@extend_schema_view(
    create=extend_schema(request=s.ProviderWriteSerializer, responses={201: s.ProviderSerializer}),
    partial_update=extend_schema(request=s.ProviderWriteSerializer, responses=s.ProviderSerializer),
    destroy=extend_schema(description="Delete a provider with its keys and models; refused while routes use them."),
)
class ProviderViewSet(StaffViewSet):
    """LLM providers (OpenAI, Azure OpenAI, Anthropic, Gemini, Mistral, OpenAI-compatible)."""

    serializer_class = s.ProviderSerializer
    queryset = Provider.objects.none()

    def get_queryset(self) -> QuerySet[Provider]:
        return Provider.objects.order_by("name", "pk")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        provider = services.create_provider(actor=request.user, **_valid(s.ProviderWriteSerializer, request))
        return Response(s.ProviderSerializer(provider).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        provider = self.get_object()
        changes = _valid(s.ProviderWriteSerializer, request, partial=True)
        provider = services.update_provider(provider, actor=request.user, **changes)
        return Response(s.ProviderSerializer(provider).data)

    def perform_destroy(self, instance: Provider) -> None:
        services.delete_provider(instance, actor=self.request.user)


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("provider", int, description="Only this provider's keys.")]),
    create=extend_schema(
        request=s.ProviderKeyCreateSerializer,
        responses={201: s.ProviderKeySerializer},
        description="Add a credential to a provider's pool. It is stored encrypted and never shown back.",
    ),
    partial_update=extend_schema(request=s.ProviderKeyUpdateSerializer, responses=s.ProviderKeySerializer),
)
class ProviderKeyViewSet(StaffViewSet):
    """Providers' key pools. Responses show a key's last four characters, never its secret."""

    serializer_class = s.ProviderKeySerializer
    queryset = ProviderKey.objects.none()

    def get_queryset(self) -> QuerySet[ProviderKey]:
        found = ProviderKey.objects.select_related("provider")
        if "provider" in self.request.query_params:
            provider = id_or_none(self.request.query_params["provider"])  # not an id: no such provider, none listed
            found = found.filter(provider_id=provider) if provider is not None else found.none()
        return found.order_by("provider__name", "priority", "pk")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(s.ProviderKeyCreateSerializer, request)
        provider = _existing(Provider, data.pop("provider"), "provider")
        key = services.add_key(provider, actor=request.user, **data)
        response = Response(s.ProviderKeySerializer(key).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = self.get_object()
        if "secret" in request.data:
            raise InvalidInput("A key's secret cannot be changed; add a new key and delete this one.")
        key = services.update_key(
            key, actor=request.user, **_valid(s.ProviderKeyUpdateSerializer, request, partial=True)
        )
        return Response(s.ProviderKeySerializer(key).data)

    def perform_destroy(self, instance: ProviderKey) -> None:
        services.delete_key(instance, actor=self.request.user)

    @extend_schema(request=s.KeyStateReasonSerializer, responses=s.ProviderKeySerializer, description="Stop using it.")
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str | None = None) -> Response:
        reason = _valid(s.KeyStateReasonSerializer, request)["reason"]
        return Response(
            s.ProviderKeySerializer(services.disable_key(self.get_object(), actor=request.user, reason=reason)).data
        )

    @extend_schema(request=None, responses=s.ProviderKeySerializer, description="Use it again (whatever its state).")
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str | None = None) -> Response:
        return Response(s.ProviderKeySerializer(services.enable_key(self.get_object(), actor=request.user)).data)


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("provider", int, description="Only this provider's models.")]),
    create=extend_schema(request=s.ModelWriteSerializer, responses={201: s.ModelSerializer}),
    partial_update=extend_schema(request=s.ModelUpdateSerializer, responses=s.ModelSerializer),
)
class ModelViewSet(StaffViewSet):
    """Upstream models with their prices, context window and capabilities."""

    serializer_class = s.ModelSerializer
    queryset = Model.objects.none()

    def get_queryset(self) -> QuerySet[Model]:
        found = Model.objects.select_related("provider")
        if "provider" in self.request.query_params:
            provider = id_or_none(self.request.query_params["provider"])  # not an id: no such provider, none listed
            found = found.filter(provider_id=provider) if provider is not None else found.none()
        return found.order_by("provider__name", "upstream_name", "pk")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(s.ModelWriteSerializer, request)
        provider = _existing(Provider, data.pop("provider"), "provider")
        model = services.create_model(actor=request.user, provider=provider, **data)
        return Response(s.ModelSerializer(model).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        model = self.get_object()
        model = services.update_model(
            model, actor=request.user, **_valid(s.ModelUpdateSerializer, request, partial=True)
        )
        return Response(s.ModelSerializer(model).data)

    def perform_destroy(self, instance: Model) -> None:
        services.delete_model(instance, actor=self.request.user)


def _route_members(
    data: dict[str, Any],
) -> tuple[list[services.TargetSpec] | None, list[Model] | None]:
    targets = data.pop("targets", None)
    fallbacks = data.pop("fallbacks", None)
    ids = {t["model"] for t in targets or ()} | set(fallbacks or ())
    found = Model.objects.select_related("provider").in_bulk(list(ids))
    missing = sorted(ids - set(found))
    if missing:
        raise InvalidInput(f"There is no model with id {', '.join(map(str, missing))}.")
    return (
        None if targets is None else [services.TargetSpec(found[t["model"]], t.get("weight", 100)) for t in targets],
        None if fallbacks is None else [found[pk] for pk in fallbacks],
    )


@extend_schema_view(
    create=extend_schema(request=s.RouteWriteSerializer, responses={201: s.RouteSerializer}),
    partial_update=extend_schema(
        request=s.RouteWriteSerializer,
        responses=s.RouteSerializer,
        description="Change settings; targets and fallbacks, when sent, replace the lists.",
    ),
)
class RouteViewSet(StaffViewSet):
    """Public model aliases: weighted targets, an ordered fallback chain, timeouts, cache and PII policy."""

    serializer_class = s.RouteSerializer
    queryset = ModelRoute.objects.none()

    def get_queryset(self) -> QuerySet[ModelRoute]:
        return ModelRoute.objects.select_related("api").prefetch_related("targets").order_by("alias", "pk")

    def _api(self, slug: str) -> Api:
        api = Api.objects.filter(slug=slug).first()
        if api is None:
            raise InvalidInput(f"There is no API {slug!r}.")
        return api

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(s.RouteWriteSerializer, request)
        targets, fallbacks = _route_members(data)
        route = services.create_route(
            actor=request.user,
            alias=data.pop("alias"),
            api=self._api(data.pop("api")),
            targets=targets or [],
            fallbacks=fallbacks or [],
            **data,
        )
        return Response(s.RouteSerializer(self.get_queryset().get(pk=route.pk)).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        route = self.get_object()
        data = _valid(s.RouteWriteSerializer, request, partial=True)
        targets, fallbacks = _route_members(data)
        if "api" in data:
            data["api"] = self._api(data["api"])
        services.update_route(route, actor=request.user, targets=targets, fallbacks=fallbacks, **data)
        return Response(s.RouteSerializer(self.get_queryset().get(pk=route.pk)).data)

    def perform_destroy(self, instance: ModelRoute) -> None:
        services.delete_route(instance, actor=self.request.user)


BUDGET_SUBJECTS: dict[str, tuple[type[ApiKey] | type[Application] | type[Tenant], str]] = {
    BudgetScope.KEY: (ApiKey, "API key"),
    BudgetScope.APPLICATION: (Application, "application"),
    BudgetScope.TENANT: (Tenant, "tenant"),
}


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("scope", str, enum=BudgetScope.values, description="Only budgets of this scope.")],
        description="Staff see every budget; team members see their teams' (tenant, application and key budgets).",
    ),
    create=extend_schema(request=s.BudgetCreateSerializer, responses={201: s.BudgetSerializer}),
    partial_update=extend_schema(request=s.BudgetUpdateSerializer, responses=s.BudgetSerializer),
)
class BudgetViewSet(StaffViewSet):
    """Spend, token-rate and request-rate limits per API key, application or tenant."""

    serializer_class = s.BudgetSerializer
    queryset = Budget.objects.none()

    def get_permissions(self) -> list[permissions.BasePermission]:
        if self.action in ("list", "retrieve"):
            return [permissions.IsAuthenticated()]
        return [permissions.IsAuthenticated(), IsStaff()]

    def get_queryset(self) -> QuerySet[Budget]:
        found = Budget.objects.select_related("api_key__application__tenant", "application__tenant", "tenant")
        if not self.request.user.is_staff:
            tenants = member_tenant_ids(self.request.user)
            found = found.filter(
                Q(tenant_id__in=tenants)
                | Q(application__tenant_id__in=tenants)
                | Q(api_key__application__tenant_id__in=tenants)
            )
        if self.request.query_params.get("scope") in BudgetScope.values:
            found = found.filter(scope=self.request.query_params["scope"])
        return found.order_by("pk")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(s.BudgetCreateSerializer, request)
        model, what = BUDGET_SUBJECTS[data.pop("scope")]
        subject = _existing(model, data.pop("subject"), what)
        budget = services.create_budget(actor=request.user, subject=subject, **data)
        return Response(s.BudgetSerializer(budget).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        budget = self.get_object()
        budget = services.update_budget(
            budget, actor=request.user, **_valid(s.BudgetUpdateSerializer, request, partial=True)
        )
        return Response(s.BudgetSerializer(budget).data)

    def perform_destroy(self, instance: Budget) -> None:
        services.delete_budget(instance, actor=self.request.user)


def register(router: Any) -> None:
    """Add the LLM resources to the management API's router (under /api/v1/llm/)."""
    router.register("llm/providers", ProviderViewSet, basename="llm-provider")
    router.register("llm/keys", ProviderKeyViewSet, basename="llm-key")
    router.register("llm/models", ModelViewSet, basename="llm-model")
    router.register("llm/routes", RouteViewSet, basename="llm-route")
    router.register("llm/budgets", BudgetViewSet, basename="llm-budget")
