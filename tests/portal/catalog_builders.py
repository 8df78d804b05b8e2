"""Build catalog entries for catalog and docs tests through the real lifecycle services."""

from datetime import timedelta

from django.utils import timezone

from portal.models import Api, ApiVersion, Plan, Tag, UpstreamTarget, Visibility
from portal.services import lifecycle

PETSTORE = {
    "openapi": "3.0.3",
    "info": {"title": "Pets", "version": "1.0"},
    "servers": [{"url": "https://pets.internal.example/v1"}],
    "paths": {"/pets": {"get": {"summary": "List pets", "responses": {"200": {"description": "The pets"}}}}},
}


def make_api(
    owner,
    staff,
    slug: str,
    *,
    name: str | None = None,
    description: str = "",
    tags: tuple[str, ...] = (),
    states: tuple[str, ...] = ("published",),
    visibility: str = Visibility.PUBLIC,
    openapi: dict | None = None,
) -> Api:
    """An API with one version per entry of ``states`` (v1, v2, ...), each moved there by
    the lifecycle services, so the catalog sees what it would see in production."""
    api = Api.objects.create(
        slug=slug, name=name or slug.title(), owner=owner, description=description, visibility=visibility
    )
    for tag in tags:
        api.tags.add(Tag.objects.get_or_create(name=tag)[0])
    for number, state in enumerate(states, start=1):
        version = ApiVersion.objects.create(
            api=api, version=f"v{number}", base_path=f"/{slug}/v{number}", openapi=openapi or {}
        )
        UpstreamTarget.objects.create(version=version, url="http://127.0.0.1:9")
        move_to(version, state, staff)
    return api


def move_to(version: ApiVersion, state: str, staff) -> ApiVersion:
    if state == "draft":
        return version
    version = lifecycle.publish_version(version, actor=staff)
    if state == "deprecated":
        version = lifecycle.deprecate_version(version, actor=staff, sunset_at=timezone.now() + timedelta(days=30))
    elif state == "retired":
        version = lifecycle.retire_version(version, actor=staff)
    return version


def make_plan(api: Api, name: str, **fields) -> Plan:
    return Plan.objects.create(api=api, name=name, **fields)
