"""Authoring prompt APIs: a model route plus a well-made prompt, sold as an ordinary API.

The template of ``portal.services.provider``: one transaction, the rows decided on locked,
keyword-only ``actor``, an audit event per change, and (for what the gateway routes) a config
change on commit. Staff, and the owners and admins of the owning team, may author; anybody
else gets NotFound (outsiders) or PermissionDenied (a plain member), never a hint.

Decisions:
- **Routes.** A version runs on a model route whose AI API is being served: its latest
  non-draft version (the one whose state the gateway gives its routes, see llm/snapshot.py)
  is published or deprecated. A route of a draft-only or retired AI API would make the
  prompt API answer 404/410, so it is not offered. A route of a public AI API may be used by
  any team (the prompt API's own plans and subscriptions decide who calls it, not the AI
  API's); a private AI API's routes only by its owner team.
- **Immutability.** Once a version is published its prompt (system prompt, template,
  schemas, output mode, route, temperature, max tokens) is frozen: clients and the generated
  OpenAPI document rely on it. A change is a new version (``copy_from`` starts it from an
  existing one). Drafts are freely edited; they are not routed, so their edits send no config
  change (publishing does, through ``portal.services.lifecycle``).
- **Validation at save.** Both schemas pass ``llm.prompt_rules.check_schema`` (the data
  plane's rules); every ``{{placeholder}}`` of the templates names a top-level property of the
  input schema; JSON output mode needs an output schema. What the gateway would refuse to run
  is refused when saved.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from llm.models import ModelRoute, OutputMode, PromptVersion
from llm.prompt_rules import RESERVED_KEYS, check_schema, template_errors, template_variables
from portal.models import Api, ApiVersion, AuditAction, Tenant, VersionState
from portal.models.catalog import ApiKind, Visibility
from portal.services import audit, provider
from portal.services.access import Actor
from portal.services.basepaths import refuse_overlap_with_other_teams
from portal.services.config_signal import publish_config_change
from portal.services.errors import InvalidInput, NotFound
from portal.services.nul import holds_nul
from portal.services.ownership import require_api_manager

API_UPDATED = AuditAction.PROMPT_API_UPDATED
VERSION_CREATED = AuditAction.PROMPT_VERSION_CREATED
PROMPT_UPDATED = AuditAction.PROMPT_UPDATED

PROMPT_FIELDS = (
    "system_prompt",
    "user_template",
    "input_schema",
    "output_mode",
    "output_schema",
    "temperature",
    "max_tokens",
)
SERVING_STATES = (VersionState.PUBLISHED, VersionState.DEPRECATED)

# A draft's starting point: valid as it is, so the playground runs at once.
STARTER_TEMPLATE = "{{text}}"
STARTER_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 4000, "examples": ["Hello!"]}},
    "required": ["text"],
    "additionalProperties": False,
}


# --- reading -------------------------------------------------------------------------------


def available_routes(owner: Tenant | int | None = None) -> QuerySet[ModelRoute]:
    """Routes a prompt version may run on: those of AI APIs whose latest non-draft version
    is published or deprecated (what the gateway serves as live), and that the prompt API's
    ``owner`` team may see: public AI APIs and its own private ones. Another team's private
    AI API (its own models, perhaps its own provider keys) is not offered: a prompt API on it
    would open it to everyone subscribed to the prompt API. Without ``owner`` (staff, in the
    Django admin): every served route."""
    serving: list[int] = []
    seen: set[int] = set()
    versions = (
        ApiVersion.objects.filter(api__kind=ApiKind.AI)
        .exclude(state=VersionState.DRAFT)
        .order_by("api_id", "-published_at", "-pk")
        .values_list("api_id", "state")
    )
    for api_id, state in versions:
        if api_id in seen:
            continue
        seen.add(api_id)
        if state in SERVING_STATES:
            serving.append(api_id)
    routes = ModelRoute.objects.filter(api_id__in=serving)
    if owner is not None:
        routes = routes.filter(Q(api__visibility=Visibility.PUBLIC) | Q(api__owner=owner))
    return routes.order_by("alias")


def prompt_of(version: ApiVersion) -> PromptVersion:
    prompt = PromptVersion.objects.filter(version=version).select_related("route", "version", "version__api").first()
    if prompt is None:
        raise NotFound(f"Version {version.version} has no prompt.")
    return prompt


# --- checks --------------------------------------------------------------------------------


def prompt_errors(fields: dict[str, Any]) -> dict[str, list[str]]:
    """Field name -> what is wrong with it, for a prompt's fields (empty when all is well).

    Pure: the forms show these inline, the services refuse on any."""
    errors: dict[str, list[str]] = {}
    input_schema = fields.get("input_schema")
    if problems := check_schema(input_schema):
        errors["input_schema"] = list(problems)
    mode = fields.get("output_mode") or OutputMode.TEXT
    if mode not in OutputMode.values:
        errors["output_mode"] = [f"Choose one of: {', '.join(OutputMode.values)}."]
    output_schema = fields.get("output_schema") or {}
    if mode == OutputMode.JSON:
        if not output_schema:
            errors["output_schema"] = ["JSON output needs an output schema the answer must satisfy."]
        elif problems := check_schema(output_schema, require_object=False):
            errors["output_schema"] = list(problems)
    elif output_schema:
        errors["output_schema"] = ["An output schema applies to JSON output only; empty it or choose JSON."]
    reserved: list[str] = []
    if isinstance(input_schema, dict) and "input_schema" not in errors:
        reserved = sorted(RESERVED_KEYS & set(input_schema.get("properties") or {}))
    if reserved:
        # The gateway reads a top-level "stream": true as "answer as an event stream".
        errors["input_schema"] = [f'"{reserved[0]}" is reserved (it steers the call); name the property otherwise.']
    template = fields.get("user_template") or ""
    if not template.strip():
        errors["user_template"] = ["The user template is required."]
    if "input_schema" not in errors and (problems := template_errors(template, input_schema)):
        errors.setdefault("user_template", []).extend(problems)
    for name in ("input_schema", "output_schema", "user_template", "system_prompt"):
        if holds_nul(fields.get(name)):
            # JSON may write it \u0000, and PostgreSQL stores no NUL (a 500 at save).
            errors[name] = ["NUL characters are not accepted."]
    if template_variables(fields.get("system_prompt") or ""):
        # The system prompt is sent as written (llm.prompts.render): the client's values go
        # into the user message only, never into the instructions.
        errors["system_prompt"] = ["The system prompt takes no placeholders; put {{variables}} in the user template."]
    return errors


def _refuse_on(errors: dict[str, list[str]]) -> None:
    if errors:
        raise InvalidInput("; ".join(f"{field.replace('_', ' ')}: {' '.join(msgs)}" for field, msgs in errors.items()))


def _full_clean(obj: Any, exclude: list[str] | None = None) -> None:
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as error:
        if hasattr(error, "error_dict"):
            raise InvalidInput(
                "; ".join(f"{k.replace('_', ' ')}: {' '.join(v)}" for k, v in error.message_dict.items())
            ) from error
        raise InvalidInput(" ".join(error.messages)) from error


def _route(route: ModelRoute | int | str, owner: Tenant | int) -> ModelRoute:
    """The route by row, id or alias, among those a prompt of ``owner``'s API may run on."""
    routes = available_routes(owner)
    if isinstance(route, ModelRoute):
        found = routes.filter(pk=route.pk).first()
    elif isinstance(route, int):
        found = routes.filter(pk=route).first()
    else:
        found = routes.filter(alias=route).first()
    if found is None:
        raise InvalidInput("Choose a model route whose AI API is published.")
    return found


# --- changes -------------------------------------------------------------------------------


def create_prompt_api(
    tenant: Tenant,
    *,
    actor: Actor,
    slug: str,
    name: str,
    description: str = "",
    visibility: str = "public",
) -> Api:
    """A new prompt API owned by ``tenant`` (its owners and admins, or staff for any team)."""
    return provider.create_api(
        tenant,
        actor=actor,
        slug=slug,
        name=name,
        description=description,
        visibility=visibility,
        kind=ApiKind.PROMPT,
    )


def update_prompt_api(api: Api, *, actor: Actor, **changes: Any) -> Api:
    """Change a prompt API's name, description or visibility (its slug and team stay)."""
    unknown = set(changes) - {"name", "description", "visibility"}
    if unknown:
        raise InvalidInput(f"Unknown API settings: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        row = Api.objects.select_for_update().select_related("owner").get(pk=api.pk)
        require_api_manager(actor, row, permission="portal.change_api")
        if row.kind != ApiKind.PROMPT:
            raise InvalidInput(f"{row.name} is not a prompt API.")
        changed = [name for name, value in changes.items() if getattr(row, name) != value]
        for name in changed:
            setattr(row, name, changes[name].strip() if name == "name" else changes[name])
        _full_clean(row)
        row.save()
        audit.record(actor, API_UPDATED, row, tenant=row.owner, changed=changed)
        if "visibility" in changed:
            publish_config_change(f"api {row.pk} visibility changed")  # who may subscribe changes
    return row


def create_prompt_version(
    api: Api,
    *,
    actor: Actor,
    version: str,
    base_path: str,
    route: ModelRoute | int | str,
    copy_from: ApiVersion | None = None,
    **prompt: Any,
) -> PromptVersion:
    """A draft version at ``base_path`` running on ``route``.

    Its prompt is ``prompt`` (any of PROMPT_FIELDS) over the prompt of ``copy_from`` (another
    version of the same API) or, without one, a starter prompt that passes every check."""
    unknown = set(prompt) - set(PROMPT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown prompt settings: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        api = Api.objects.select_for_update().select_related("owner").get(pk=api.pk)
        require_api_manager(actor, api, permission="portal.add_apiversion")
        if api.kind != ApiKind.PROMPT:
            raise InvalidInput(f"{api.name} is not a prompt API.")
        fields: dict[str, Any] = {
            "system_prompt": "",
            "user_template": STARTER_TEMPLATE,
            "input_schema": STARTER_INPUT_SCHEMA,
            "output_mode": OutputMode.TEXT,
            "output_schema": {},
            "temperature": None,
            "max_tokens": None,
        }
        if copy_from is not None:
            if copy_from.api_id != api.pk:
                raise NotFound("No such version of this API.")
            source = prompt_of(copy_from)
            fields.update({name: getattr(source, name) for name in PROMPT_FIELDS})
        fields.update(prompt)
        _refuse_on(prompt_errors(fields))
        chosen = _route(route, api.owner_id)
        refuse_overlap_with_other_teams(base_path or None, owner_id=api.owner_id)
        row = ApiVersion(api=api, version=version.strip(), base_path=base_path or None)
        _full_clean(row)
        try:
            with transaction.atomic():
                row.save()
        except IntegrityError as error:
            raise InvalidInput("That version or base path is taken; choose another.") from error
        result = PromptVersion(version=row, route=chosen, **fields)
        _full_clean(result, exclude=["version"])
        result.save()
        audit.record(
            actor,
            VERSION_CREATED,
            row,
            tenant=api.owner,
            base_path=row.base_path,
            route=chosen.alias,
            copied_from=copy_from.version if copy_from is not None else None,
        )
        # Drafts are not routed: publishing signals.
    return result


def update_prompt(
    prompt: PromptVersion, *, actor: Actor, route: ModelRoute | int | str | None = None, **fields: Any
) -> PromptVersion:
    """Change a draft's prompt (any of PROMPT_FIELDS, and its route). A published, deprecated
    or retired version's prompt is frozen: make a new version."""
    unknown = set(fields) - set(PROMPT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown prompt settings: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        version = ApiVersion.objects.select_for_update().select_related("api", "api__owner").get(pk=prompt.version_id)
        require_api_manager(actor, version.api, permission="portal.change_apiversion")
        row = PromptVersion.objects.select_for_update().get(pk=prompt.pk)
        if version.state != VersionState.DRAFT:
            raise InvalidInput(
                f"Version {version.version} is {version.get_state_display().lower()}: its prompt is frozen "
                "because clients rely on it. Create a new version to change it."
            )
        merged = {name: getattr(row, name) for name in PROMPT_FIELDS} | fields
        _refuse_on(prompt_errors(merged))
        changed = [name for name in PROMPT_FIELDS if name in fields and getattr(row, name) != fields[name]]
        for name in changed:
            setattr(row, name, fields[name])
        if route is not None:
            chosen = _route(route, version.api.owner_id)
            if chosen.pk != row.route_id:
                row.route = chosen
                changed.append("route")
        _full_clean(row, exclude=["version"])
        row.save()
        audit.record(actor, PROMPT_UPDATED, version, tenant=version.api.owner, changed=changed)
    return row


def check_publishable(version: ApiVersion) -> PromptVersion:
    """The version's prompt, if it may be published: it has one, it passes today's checks,
    and its route is still served. Called by ``portal.services.lifecycle.publish_version``."""
    prompt = PromptVersion.objects.filter(version=version).select_related("route").first()
    if prompt is None:
        raise InvalidInput(f"Version {version.version} has no prompt yet; write one before publishing.")
    _refuse_on(prompt_errors({name: getattr(prompt, name) for name in PROMPT_FIELDS}))
    if not available_routes(version.api.owner_id).filter(pk=prompt.route_id).exists():
        raise InvalidInput(
            f"The model route {prompt.route.alias} is not published or not open to this team; choose another route."
        )
    return prompt
