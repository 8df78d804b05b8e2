"""The API version lifecycle: draft -> published -> deprecated -> retired (final).

A version may also be retired straight from published, and a deprecated version may be
published again (un-deprecated) before it is retired.

Every move: one transaction, the version row locked before anything is decided on it, an
audit event, and a config change published to the gateways on commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.models import ApiVersion, AuditAction, VersionState
from portal.models.catalog import ApiKind, base_path_refusal
from portal.services import audit
from portal.services.access import Actor
from portal.services.basepaths import refuse_overlap_with_other_teams
from portal.services.config_signal import publish_config_change
from portal.services.errors import IllegalTransition, InvalidInput, NotFound
from portal.services.ownership import require_api_manager

DEFAULT_SUNSET_AFTER = timedelta(days=90)
# Moving a version is changing it: staff need this permission (view-only staff may not).
PERMISSION = "portal.change_apiversion"

ALLOWED_MOVES = {
    VersionState.DRAFT: {VersionState.PUBLISHED},
    VersionState.PUBLISHED: {VersionState.DEPRECATED, VersionState.RETIRED},
    VersionState.DEPRECATED: {VersionState.PUBLISHED, VersionState.RETIRED},
    VersionState.RETIRED: set(),
}

ACTIONS = {
    VersionState.PUBLISHED: AuditAction.VERSION_PUBLISHED,
    VersionState.DEPRECATED: AuditAction.VERSION_DEPRECATED,
    VersionState.RETIRED: AuditAction.VERSION_RETIRED,
}


def _locked(version: ApiVersion, actor: Actor) -> ApiVersion:
    """The version re-read under a row lock, once the actor may move it."""
    row = ApiVersion.objects.select_for_update().select_related("api", "api__owner").filter(pk=version.pk).first()
    if row is None:
        raise NotFound("No such version.")
    require_api_manager(actor, row.api, permission=PERMISSION)  # staff with it, or the owning team's admins
    return row


def _move(
    version: ApiVersion,
    target: VersionState,
    actor: Actor,
    *,
    prepare: Callable[[ApiVersion], None] | None = None,
    **details: Any,
) -> ApiVersion:
    """Called inside the transaction, with ``version`` locked by ``_locked``. ``prepare(version)``,
    if given, runs once the move is legal and may refuse it or set fields saved with it."""
    current = VersionState(version.state)
    if target not in ALLOWED_MOVES[current]:
        raise IllegalTransition(
            f"Version {version.version} of {version.api.name} is {current.label.lower()}; "
            f"it cannot become {target.label.lower()}."
        )
    if prepare is not None:
        prepare(version)
    now = timezone.now()
    version.state = target
    if target == VersionState.PUBLISHED:
        version.published_at = version.published_at or now
        version.deprecated_at = None
        version.sunset_at = None
    elif target == VersionState.DEPRECATED:
        version.deprecated_at = now
        version.sunset_at = details["sunset_at"]
    elif target == VersionState.RETIRED:
        version.retired_at = now
    version.save()
    audit.record(
        actor,
        ACTIONS[target],
        version,
        tenant=version.api.owner,
        previous_state=current.value,
        **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in details.items()},
    )
    publish_config_change(f"version {version.pk} {target}")
    return version


@transaction.atomic
def publish_version(version: ApiVersion, *, actor: Actor) -> ApiVersion:
    row = _locked(version, actor)
    # The field's validators stop new ones; this stops a version saved without full_clean
    # (or before the rule existed) from ever being routed over the gateway's own endpoints
    # (operations under /_portico, the LLM endpoints under /v1).
    if refusal := base_path_refusal(row.base_path):
        raise InvalidInput(refusal)
    # Checked again here, when the path becomes routed: two teams' drafts may have been
    # saved at nesting paths at the same moment.
    refuse_overlap_with_other_teams(row.base_path, owner_id=row.api.owner_id, version_id=row.pk)
    if row.api.kind == ApiKind.AI:
        # An AI API's version carries only the lifecycle: its model routes (llm.ModelRoute)
        # say where calls go, so it needs neither a base path nor upstream targets.
        return _move(row, VersionState.PUBLISHED, actor)
    if row.api.kind == ApiKind.PROMPT:
        return _move(row, VersionState.PUBLISHED, actor, prepare=_prepare_prompt)
    if not row.base_path:
        raise InvalidInput("A version of a REST API needs a base path before it is published.")
    if not row.targets.filter(enabled=True).exists():
        raise InvalidInput("A version needs at least one enabled upstream target before it is published.")
    return _move(row, VersionState.PUBLISHED, actor)


def _prepare_prompt(version: ApiVersion) -> None:
    """A prompt version publishes only with a valid prompt on a served route; its OpenAPI
    document is generated from the prompt's schemas and stored with it, so the catalog, the
    docs page and try-it serve it as they do a REST API's (llm/prompt_openapi.py)."""
    # Imported here: llm's models import portal's, and portal's services load first.
    from llm.prompt_openapi import build_document
    from llm.prompt_services import check_publishable

    if not version.base_path:
        raise InvalidInput("A version of a prompt API needs a base path before it is published.")
    prompt = check_publishable(version)
    version.openapi = build_document(
        title=version.api.name,
        version=version.version,
        description=version.api.description,
        base_path=version.base_path,
        input_schema=prompt.input_schema,
        output_mode=prompt.output_mode,
        output_schema=prompt.output_schema,
        server_url=settings.PORTICO_GATEWAY_URL,
        model=prompt.route.alias,
    )


@transaction.atomic
def deprecate_version(
    version: ApiVersion, *, actor: Actor, sunset_at: datetime | None = None, reason: str = ""
) -> ApiVersion:
    row = _locked(version, actor)
    sunset_at = sunset_at or timezone.now() + DEFAULT_SUNSET_AFTER
    if sunset_at <= timezone.now():
        raise InvalidInput("The sunset date must be in the future.")
    return _move(row, VersionState.DEPRECATED, actor, sunset_at=sunset_at, reason=reason)


@transaction.atomic
def retire_version(version: ApiVersion, *, actor: Actor, reason: str = "") -> ApiVersion:
    row = _locked(version, actor)
    return _move(row, VersionState.RETIRED, actor, reason=reason)


def set_version_state(version: ApiVersion, state: str, *, actor: Actor, **kwargs: Any) -> ApiVersion:
    """Dispatch by target state name, for callers that receive it as data (REST API)."""
    if state == VersionState.PUBLISHED:
        return publish_version(version, actor=actor, **kwargs)
    if state == VersionState.DEPRECATED:
        return deprecate_version(version, actor=actor, **kwargs)
    if state == VersionState.RETIRED:
        return retire_version(version, actor=actor, **kwargs)
    moves = (VersionState.PUBLISHED, VersionState.DEPRECATED, VersionState.RETIRED)
    raise InvalidInput(f"Unknown target state {state!r}; use one of: {', '.join(moves)}.")
