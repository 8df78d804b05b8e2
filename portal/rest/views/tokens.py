from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from portal.models import PersonalAccessToken
from portal.rest import limits
from portal.rest import serializers as s
from portal.rest.responses import secret_created
from portal.rest.scoping import ID_PATTERN
from portal.services import tokens
from portal.services.access import person


@extend_schema_view(
    create=extend_schema(
        request=s.AccessTokenCreateSerializer,
        responses={201: s.NewAccessTokenSerializer},
        description="Create a personal access token. The answer holds its secret: the only time anyone sees it.",
    )
)
class AccessTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your own personal access tokens for this API."""

    serializer_class = s.AccessTokenSerializer
    queryset = PersonalAccessToken.objects.none()
    lookup_value_regex = ID_PATTERN

    def get_queryset(self) -> QuerySet[PersonalAccessToken]:
        return PersonalAccessToken.objects.filter(user=person(self.request.user)).order_by("-created_at", "-pk")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = s.AccessTokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        limits.check_token_creation(request)
        token, secret = tokens.create_access_token(actor=request.user, **data.validated_data)
        token.secret = secret  # type: ignore[attr-defined]  # for the answer only, never stored
        return secret_created(s.NewAccessTokenSerializer(token).data)

    @extend_schema(request=None, responses=s.AccessTokenSerializer, description="Stop the token at once.")
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        return Response(s.AccessTokenSerializer(tokens.revoke_access_token(self.get_object(), actor=request.user)).data)
