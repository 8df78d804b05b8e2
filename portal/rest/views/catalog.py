from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from portal.models import Api, Membership
from portal.rest import serializers as s
from portal.rest.scoping import member_tenant_ids, text_param
from portal.services import catalog
from portal.services.access import person


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="Words that must all appear in the name, description or tags."),
            OpenApiParameter("tag", str, many=True, description="Only APIs carrying this tag (repeatable)."),
        ]
    )
)
class CatalogViewSet(viewsets.ReadOnlyModelViewSet):
    """Published and deprecated APIs the caller may see: public ones and their teams' own."""

    serializer_class = s.ApiSerializer
    queryset = Api.objects.none()  # for the schema; get_queryset scopes to the caller
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def get_queryset(self) -> QuerySet[Api]:
        apis = catalog.visible_apis_for(member_tenant_ids(self.request.user))
        query = text_param(self.request.query_params, "q")
        tags = [tag.replace("\x00", "") for tag in self.request.query_params.getlist("tag")]
        if self.action == "list" and (query.strip() or tags):
            # The catalog's own search, once per team of the caller (plus the public view).
            tenants = [None, *(m.tenant for m in Membership.objects.filter(user=person(self.request.user)))]
            found: set[int] = set()
            for tenant in tenants:
                found.update(catalog.search_apis(tenant, query, tags).values_list("pk", flat=True))
            apis = apis.filter(pk__in=found)
        return apis.order_by("name").prefetch_related("tags")

    @extend_schema(
        responses={(200, "application/json"): OpenApiTypes.OBJECT},
        description="The version's OpenAPI document, its server set to the gateway.",
    )
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<version>[^/\x00]+)/openapi")
    def openapi(self, request: Request, slug: str | None = None, version: str = "") -> Response:
        found = catalog.visible_version(self.get_object(), version)
        return Response(catalog.try_it_document(found, settings.PORTICO_GATEWAY_URL))
