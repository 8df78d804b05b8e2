from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from portal.models import ApiVersion, VersionState
from portal.rest import serializers as s
from portal.rest.scoping import ID_PATTERN, IsStaff, text_param
from portal.services import lifecycle


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("api", str, description="Only this API's versions (its slug)."),
            OpenApiParameter("state", str, enum=VersionState.values, description="Only versions in this state."),
        ]
    )
)
class VersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every API version in every state, and its lifecycle: for Portico administrators."""

    serializer_class = s.StaffVersionSerializer
    queryset = ApiVersion.objects.none()
    lookup_value_regex = ID_PATTERN
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    def get_queryset(self) -> QuerySet[ApiVersion]:
        found = ApiVersion.objects.select_related("api")
        if api := text_param(self.request.query_params, "api"):
            found = found.filter(api__slug=api)
        if self.action == "list" and self.request.query_params.get("state") in VersionState.values:
            found = found.filter(state=self.request.query_params["state"])
        return found.order_by("api__slug", "version", "pk")

    @extend_schema(
        request=s.TransitionSerializer,
        responses=s.StaffVersionSerializer,
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
        version = lifecycle.set_version_state(version, target, actor=request.user, **extra)
        return Response(s.StaffVersionSerializer(version).data)
