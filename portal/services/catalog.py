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


def visible_versions(api: Api):
    return api.versions.filter(state__in=DEVELOPER_VISIBLE_STATES).order_by("-published_at", "-created_at")
