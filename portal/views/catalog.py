"""The catalog pages: search with tag filters, an API's page, and its reference docs.

Thin callers of ``portal.services.catalog``, which decides what a developer may see; an
invisible API or version (draft, retired, another tenant's private API) is a plain 404.
"""

from urllib.parse import urlencode

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render

from portal.models import Subscription, VersionState
from portal.services import catalog as catalog_service
from portal.services.errors import NotFound
from portal.views.context import current_tenant
from portal.views.service_errors import service_errors

MAX_QUERY_LENGTH = 200
MAX_TAGS = 20  # each selected tag is one more subquery: a URL with thousands is not a search


def _search_text(value: str) -> str:
    """A query-string text without NUL characters, as the REST API reads them: PostgreSQL
    refuses NUL in any string, so one would turn a search into a 500."""
    return value.replace("\x00", "").strip()


def catalog(request):
    tenant = current_tenant(request)
    query = _search_text(request.GET.get("q", ""))[:MAX_QUERY_LENGTH]
    tags = [t for t in dict.fromkeys(_search_text(t) for t in request.GET.getlist("tag")) if t][:MAX_TAGS]
    apis = list(catalog_service.search_apis(tenant, query, tags))
    return render(
        request,
        "portal/catalog/list.html",
        {
            "apis": apis,
            "query": query,
            "selected_tags": tags,
            "tag_filters": _tag_filters(catalog_service.catalog_tags(tenant), query, tags),
            "filtered": bool(query or tags),
        },
    )


def _tag_filters(tags, query, selected):
    """Each tag with whether it is selected and the link that toggles it, keeping the query."""
    filters = []
    for tag in tags:
        chosen = tag.name in selected
        toggled = [t for t in selected if t != tag.name] if chosen else [*selected, tag.name]
        params = urlencode([("q", query)] * bool(query) + [("tag", t) for t in toggled])
        filters.append({"tag": tag, "selected": chosen, "url": "?" + params if params else "?"})
    return filters


@service_errors()  # NotFound: a 404
def api_detail(request, slug):
    tenant = current_tenant(request)
    api = catalog_service.visible_api(tenant, slug)
    versions = list(catalog_service.visible_versions(api))
    plans = [(plan, catalog_service.plan_limits(plan)) for plan in catalog_service.active_plans(api)]
    my_subscriptions = (
        Subscription.objects.filter(application__tenant=tenant, api=api).select_related("application", "plan")
        if tenant
        else Subscription.objects.none()
    )
    return render(
        request,
        "portal/catalog/detail.html",
        {
            "api": api,
            "versions": [(v, catalog_service.gateway_base_url(v, settings.PORTICO_GATEWAY_URL)) for v in versions],
            "current_version": next((v for v in versions if v.state == VersionState.PUBLISHED), None),
            "plans": plans,
            "my_subscriptions": my_subscriptions.order_by("application__name"),
        },
    )


@service_errors()  # NotFound: a 404
def api_docs(request, slug, version):
    api = catalog_service.visible_api(current_tenant(request), slug)
    version = catalog_service.visible_version(api, version)
    other_versions = [v for v in catalog_service.visible_versions(api) if v.pk != version.pk]
    newest = next((v for v in other_versions if v.state == VersionState.PUBLISHED), None)
    keys = catalog_service.keys_for_try_it(current_tenant(request), api)
    return render(
        request,
        "portal/catalog/docs.html",
        {
            "api": api,
            "version": version,
            "other_versions": other_versions,
            "newest_published": newest,
            "base_url": catalog_service.gateway_base_url(version, settings.PORTICO_GATEWAY_URL),
            "has_document": bool(isinstance(version.openapi, dict) and version.openapi),
            "try_it_keys": keys,
            "key_header": catalog_service.KEY_HEADER,
            "docs_config": {"scheme": catalog_service.KEY_SCHEME},
        },
    )


def openapi_document(request, slug, version):
    """The version's OpenAPI document, its server set to the gateway and key auth declared."""
    try:
        api = catalog_service.visible_api(current_tenant(request), slug)
        version = catalog_service.visible_version(api, version)
        document = catalog_service.try_it_document(version, settings.PORTICO_GATEWAY_URL)
    except NotFound as error:
        return JsonResponse({"error": {"code": error.code, "message": error.message}}, status=error.status)
    return JsonResponse(document)
