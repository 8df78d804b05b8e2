"""What the catalog shows to whom."""

from django.db.models import Q, QuerySet

from portal.models import Api, Tenant, VersionState, Visibility

DEVELOPER_VISIBLE_STATES = (VersionState.PUBLISHED, VersionState.DEPRECATED)


def visible_apis(tenant: Tenant | None = None) -> QuerySet[Api]:
    """APIs with at least one published or deprecated version, public or owned by ``tenant``."""
    scope = Q(visibility=Visibility.PUBLIC)
    if tenant is not None:
        scope |= Q(owner=tenant)
    return Api.objects.filter(scope, versions__state__in=DEVELOPER_VISIBLE_STATES).distinct()


def visible_apis_for(tenant_ids) -> QuerySet[Api]:
    """Like visible_apis, for a person in several tenants (the REST API's caller)."""
    scope = Q(visibility=Visibility.PUBLIC) | Q(owner_id__in=list(tenant_ids))
    return Api.objects.filter(scope, versions__state__in=DEVELOPER_VISIBLE_STATES).distinct()


def visible_versions(api: Api):
    return api.versions.filter(state__in=DEVELOPER_VISIBLE_STATES).order_by("-published_at", "-created_at")
