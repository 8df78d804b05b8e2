"""The catalog: search, API pages, and reference docs rendered from OpenAPI."""

import copy

from django.conf import settings
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, render

from portal.forms import limits_text
from portal.models import Api, ApiVersion, Tag
from portal.services.catalog import DEVELOPER_VISIBLE_STATES, visible_apis, visible_versions
from portal.views.context import current_tenant


def catalog(request):
    tenant = current_tenant(request)
    apis = visible_apis(tenant).prefetch_related("tags")
    query = request.GET.get("q", "").strip()
    tag = request.GET.get("tag", "").strip()
    if query:
        apis = apis.filter(
            Q(name__icontains=query) | Q(description__icontains=query) | Q(tags__name__icontains=query)
        ).distinct()
    if tag:
        apis = apis.filter(tags__name=tag)
    tags = Tag.objects.filter(apis__in=visible_apis(tenant)).distinct()
    return render(request, "portal/catalog/list.html", {"apis": apis, "query": query, "tag": tag, "tags": tags})


def _visible_api(request, slug: str) -> Api:
    return get_object_or_404(visible_apis(current_tenant(request)), slug=slug)


def api_detail(request, slug):
    api = _visible_api(request, slug)
    plans = [(plan, limits_text(plan)) for plan in api.plans.filter(is_active=True)]
    return render(
        request,
        "portal/catalog/detail.html",
        {"api": api, "versions": visible_versions(api), "plans": plans, "gateway_url": settings.PORTICO_GATEWAY_URL},
    )


def _visible_version(request, slug, version) -> ApiVersion:
    api = _visible_api(request, slug)
    return get_object_or_404(ApiVersion, api=api, version=version, state__in=DEVELOPER_VISIBLE_STATES)


def api_docs(request, slug, version):
    version = _visible_version(request, slug, version)
    return render(request, "portal/catalog/docs.html", {"api": version.api, "version": version})


def openapi_document(request, slug, version):
    """The version's OpenAPI document, pointed at the gateway and with key auth declared,
    so the docs' try-it console calls the real gateway with the developer's key."""
    version = _visible_version(request, slug, version)
    if not isinstance(version.openapi, dict) or not version.openapi:
        raise Http404("This version has no OpenAPI document.")
    document = copy.deepcopy(version.openapi)
    document["servers"] = [{"url": settings.PORTICO_GATEWAY_URL.rstrip("/") + version.base_path}]
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})["PorticoKey"] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "Your Portico API key (pt_...). Create one under Applications.",
    }
    document["security"] = [{"PorticoKey": []}]
    return JsonResponse(document)
