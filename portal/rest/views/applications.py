from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from portal.models import Application
from portal.rest import limits
from portal.rest import serializers as s
from portal.rest.responses import secret_created
from portal.rest.scoping import ID_PATTERN, chosen_tenant, member_tenant_ids, text_param
from portal.services import applications
from portal.services import keys as key_service


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("tenant", str, description="Only this team's applications.")]),
    create=extend_schema(request=s.ApplicationCreateSerializer, responses={201: s.ApplicationSerializer}),
    partial_update=extend_schema(request=s.ApplicationUpdateSerializer, responses=s.ApplicationSerializer),
)
class ApplicationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your teams' applications. Developers create and edit; deleting one needs an admin."""

    serializer_class = s.ApplicationSerializer
    queryset = Application.objects.none()
    lookup_value_regex = ID_PATTERN

    def get_queryset(self) -> QuerySet[Application]:
        apps = Application.objects.filter(tenant_id__in=member_tenant_ids(self.request.user)).select_related("tenant")
        if tenant := text_param(self.request.query_params, "tenant"):
            apps = apps.filter(tenant__slug=tenant)
        return apps.order_by("name", "pk")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = s.ApplicationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = chosen_tenant(request.user, data.validated_data.get("tenant"))
        app = applications.create_application(
            tenant, actor=request.user, name=data.validated_data["name"], description=data.validated_data["description"]
        )
        return Response(s.ApplicationSerializer(app).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        app = self.get_object()
        data = s.ApplicationUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        app = applications.update_application(app, actor=request.user, **data.validated_data)
        return Response(s.ApplicationSerializer(app).data)

    def perform_destroy(self, instance: Application) -> None:
        applications.delete_application(instance, actor=self.request.user)

    @extend_schema(responses=s.ApiKeySerializer(many=True), description="The application's keys, newest first.")
    @action(detail=True, methods=["get"])
    def keys(self, request: Request, pk: str | None = None) -> Response:
        app = self.get_object()
        page = self.paginate_queryset(app.keys.select_related("rotated_from").order_by("-created_at", "-pk"))
        return self.get_paginated_response(s.ApiKeySerializer(page, many=True).data)

    @extend_schema(
        request=s.ApiKeyCreateSerializer,
        responses={201: s.NewApiKeySerializer},
        description="Create a key. The answer holds its secret: the only time anyone sees it.",
    )
    @keys.mapping.post
    def create_key(self, request: Request, pk: str | None = None) -> Response:
        app = self.get_object()
        data = s.ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        limits.check_key_creation(request)
        key, secret = key_service.create_api_key(app, actor=request.user, **data.validated_data)
        key.secret = secret  # type: ignore[attr-defined]  # for the answer only, never stored
        return secret_created(s.NewApiKeySerializer(key).data)
