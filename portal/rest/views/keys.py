from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from portal.models import ApiKey
from portal.rest import limits
from portal.rest import serializers as s
from portal.rest.responses import secret_created
from portal.rest.scoping import ID_PATTERN, id_list, member_tenant_ids
from portal.services import keys as key_service


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("application", int, description="Only this application's keys.")])
)
class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your teams' API keys, by prefix. Secrets are never shown again after creation."""

    serializer_class = s.ApiKeySerializer
    queryset = ApiKey.objects.none()
    lookup_value_regex = ID_PATTERN

    def get_queryset(self) -> QuerySet[ApiKey]:
        found = ApiKey.objects.filter(application__tenant_id__in=member_tenant_ids(self.request.user))
        if "application" in self.request.query_params:
            found = found.filter(application_id__in=id_list(self.request.query_params["application"]))
        return found.select_related("application__tenant", "rotated_from").order_by("-created_at", "-pk")

    @extend_schema(
        request=s.RotateSerializer,
        responses={201: s.NewApiKeySerializer},
        description="Issue a successor key (its secret shown once); the old one keeps working for the grace period.",
    )
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, pk: str | None = None) -> Response:
        key = self.get_object()
        data = s.RotateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        limits.check_key_rotation(request)
        new, secret = key_service.rotate_api_key(
            key, actor=request.user, grace_seconds=data.validated_data["grace_seconds"]
        )
        new.secret = secret  # type: ignore[attr-defined]  # for the answer only, never stored
        return secret_created(s.NewApiKeySerializer(new).data)

    @extend_schema(request=None, responses=s.ApiKeySerializer, description="Stop the key at once.")
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        return Response(s.ApiKeySerializer(key_service.revoke_api_key(self.get_object(), actor=request.user)).data)
