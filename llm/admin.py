"""Django admin for the LLM control plane. Every save and delete goes through
``llm.services`` (same rules, audit trail and gateway reload as the REST API); forms check
the same rules first so a mistake comes back as a form error, not a failed save.

Provider keys: the secret is a write-only form field when the key is added; afterwards the
admin shows only its last four characters.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from llm import prompt_services, services
from llm.models import (
    Budget,
    BudgetAlert,
    BudgetScope,
    Capability,
    Model,
    ModelRoute,
    PiiDetector,
    PromptApi,
    PromptVersion,
    Provider,
    ProviderKey,
    RouteTarget,
    TargetRole,
)
from portal.admin import DecisionForm, DeprecationForm, ServiceErrorsAdmin, run_with_reason
from portal.models import ApiVersion, VersionState
from portal.prompt_forms import JsonField
from portal.services import lifecycle
from portal.services.errors import InvalidInput, ServiceError


def _form_error(error: ServiceError) -> forms.ValidationError:
    return forms.ValidationError(error.message)


class ServiceDeleteMixin(ServiceErrorsAdmin):
    """Deletes through the service; a refusal becomes a message instead of a crash (and a
    save the service refuses is one too: ``ServiceErrorsAdmin``)."""

    def _delete_with(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        try:
            self._delete_with(request, obj)
        except ServiceError as error:
            self.message_user(request, f"{obj}: {error.message}", messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


def _changes(form: forms.ModelForm, fields: frozenset[str]) -> dict[str, Any]:
    return {name: form.cleaned_data[name] for name in form.changed_data if name in fields}


# -- providers and keys --------------------------------------------------------------------------


class ProviderKeyInline(admin.TabularInline):
    """The pool at a glance; keys are added and changed on their own page (the secret field)."""

    model = ProviderKey
    fields = readonly_fields = ("label", "last4", "priority", "state", "state_until", "expires_at")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ProviderForm(forms.ModelForm):
    class Meta:
        model = Provider
        fields = ["name", "kind", "base_url", "azure_api_version", "enabled"]

    def clean_kind(self) -> str:
        kind: str = self.cleaned_data["kind"]
        provider = self.instance
        changed = provider.pk and kind != Provider.objects.get(pk=provider.pk).kind
        if changed and (provider.models.exists() or provider.keys.exists()):
            raise forms.ValidationError("A provider with models or keys keeps its kind; add a new provider.")
        return kind


@admin.register(Provider)
class ProviderAdmin(ServiceDeleteMixin):
    form = ProviderForm
    list_display = ["name", "kind", "base_url", "enabled", "key_count", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]
    inlines = [ProviderKeyInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        providers: QuerySet[Provider] = super().get_queryset(request)
        return providers.annotate(key_count=Count("keys"))

    @admin.display(description="Keys", ordering="key_count")
    def key_count(self, obj: Provider) -> int:
        return getattr(obj, "key_count", 0)

    def save_model(self, request: HttpRequest, obj: Provider, form: forms.ModelForm, change: bool) -> None:
        if change:
            services.update_provider(obj, actor=request.user, **_changes(form, services.PROVIDER_FIELDS))
        else:
            created = services.create_provider(actor=request.user, **form.cleaned_data)
            obj.pk = created.pk

    def _delete_with(self, request: HttpRequest, obj: Provider) -> None:
        services.delete_provider(obj, actor=request.user)


class ProviderKeyAddForm(forms.ModelForm):
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        strip=True,
        help_text="The provider's API key. Stored encrypted; Portico never shows it again.",
    )

    class Meta:
        model = ProviderKey
        fields = ["provider", "label", "secret", "priority", "expires_at"]

    def clean_secret(self) -> str:
        try:
            return services._clean_secret(self.cleaned_data["secret"])
        except InvalidInput as error:
            raise _form_error(error) from error


@admin.register(ProviderKey)
class ProviderKeyAdmin(ServiceDeleteMixin):
    list_display = ["__str__", "provider", "label", "masked_secret", "priority", "state", "state_until", "expires_at"]
    list_filter = ["state", "provider"]
    search_fields = ["label", "provider__name", "last4"]
    list_select_related = ["provider"]
    actions = ["disable", "enable"]

    @admin.display(description="Secret")
    def masked_secret(self, obj: ProviderKey) -> str:
        return f"••••••••{obj.last4}" if obj.last4 else "••••••••"

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ProviderKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ("provider", "label", "secret", "priority", "expires_at")
        return ("provider", "label", "masked_secret", "priority", "state", "state_until", "expires_at", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return ["provider", "masked_secret", "state", "state_until", "created_at"]

    def save_model(self, request: HttpRequest, obj: ProviderKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            services.update_key(obj, actor=request.user, **_changes(form, services.KEY_FIELDS))
            return
        data = form.cleaned_data
        key = services.add_key(
            data["provider"],
            actor=request.user,
            secret=data["secret"],
            label=data.get("label", ""),
            priority=data.get("priority") or 0,
            expires_at=data.get("expires_at"),
        )
        obj.pk = key.pk
        obj.last4 = key.last4

    def _delete_with(self, request: HttpRequest, obj: ProviderKey) -> None:
        services.delete_key(obj, actor=request.user)

    def _each(self, request: HttpRequest, queryset: QuerySet[ProviderKey], apply: Any, done: str) -> None:
        for key in queryset:
            try:
                apply(key)
                self.message_user(request, f"{key}: {done}.", messages.SUCCESS)
            except ServiceError as error:
                self.message_user(request, f"{key}: {error.message}", messages.ERROR)

    @admin.action(description="Disable selected keys", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[ProviderKey]) -> None:
        self._each(request, queryset, lambda k: services.disable_key(k, actor=request.user), "disabled")

    @admin.action(description="Enable selected keys (whatever their state)", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[ProviderKey]) -> None:
        self._each(request, queryset, lambda k: services.enable_key(k, actor=request.user), "enabled")


# -- models ---------------------------------------------------------------------------------------


class LlmModelForm(forms.ModelForm):
    capabilities = forms.MultipleChoiceField(
        choices=Capability.choices, widget=forms.CheckboxSelectMultiple, initial=[Capability.CHAT.value]
    )

    class Meta:
        model = Model
        fields = [
            "provider",
            "upstream_name",
            "display_name",
            "input_price",
            "output_price",
            "cached_input_price",
            "context_window",
            "capabilities",
        ]


@admin.register(Model)
class LlmModelAdmin(ServiceDeleteMixin):
    form = LlmModelForm
    list_display = [
        "__str__",
        "provider",
        "upstream_name",
        "input_price",
        "output_price",
        "cached_input_price",
        "context_window",
    ]
    list_filter = ["provider"]
    search_fields = ["upstream_name", "display_name", "provider__name"]
    list_select_related = ["provider"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["provider"] if obj else []

    def save_model(self, request: HttpRequest, obj: Model, form: forms.ModelForm, change: bool) -> None:
        if change:
            services.update_model(obj, actor=request.user, **_changes(form, services.MODEL_FIELDS))
        else:
            created = services.create_model(actor=request.user, **form.cleaned_data)
            obj.pk = created.pk

    def _delete_with(self, request: HttpRequest, obj: Model) -> None:
        services.delete_model(obj, actor=request.user)


# -- routes ---------------------------------------------------------------------------------------


def _members(formset: forms.BaseFormSet) -> tuple[list[services.TargetSpec], list[Model]]:
    targets: list[services.TargetSpec] = []
    fallbacks: list[tuple[int, int, Model]] = []
    for number, form in enumerate(formset.forms):
        data = getattr(form, "cleaned_data", None)
        if not data or data.get("DELETE") or not data.get("model"):
            continue
        if data.get("role") == TargetRole.FALLBACK:
            fallbacks.append((data.get("position") or 0, number, data["model"]))
        else:
            targets.append(services.TargetSpec(data["model"], data.get("weight") or 0))
    return targets, [model for _position, _number, model in sorted(fallbacks, key=lambda f: (f[0], f[1]))]


class RouteTargetFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        targets, fallbacks = _members(self)
        try:
            services.validate_route_members(targets, fallbacks)
        except InvalidInput as error:
            raise _form_error(error) from error


class RouteTargetInline(admin.TabularInline):
    model = RouteTarget
    formset = RouteTargetFormSet
    fields = ["role", "model", "weight", "position"]
    extra = 1
    autocomplete_fields = ["model"]


class ModelRouteForm(forms.ModelForm):
    pii_detectors = forms.MultipleChoiceField(
        choices=PiiDetector.choices, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = ModelRoute
        fields = ["alias", "api", *sorted(services.ROUTE_FIELDS - {"alias", "api"})]


ROUTE_SETTINGS = services.ROUTE_FIELDS - {"alias", "api"}


@admin.register(ModelRoute)
class ModelRouteAdmin(ServiceDeleteMixin):
    form = ModelRouteForm
    list_display = ["alias", "api", "retries", "cache_ttl_seconds", "pii_mode", "capture", "updated_at"]
    list_filter = ["api", "pii_mode", "capture"]
    search_fields = ["alias"]
    list_select_related = ["api"]
    inlines = [RouteTargetInline]

    def save_model(self, request: HttpRequest, obj: ModelRoute, form: forms.ModelForm, change: bool) -> None:
        """Saved in save_related, together with its targets, by one service call."""

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """The targets are written by the service in save_related."""

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        for formset in formsets:  # what the admin's change message reads from a saved formset
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        inline = next(f for f in formsets if isinstance(f, RouteTargetFormSet))
        targets, fallbacks = _members(inline)
        settings = {name: form.cleaned_data[name] for name in ROUTE_SETTINGS if name in form.cleaned_data}
        route = form.instance
        if change:
            services.update_route(
                route,
                actor=request.user,
                targets=targets,
                fallbacks=fallbacks,
                alias=form.cleaned_data["alias"],
                api=form.cleaned_data["api"],
                **settings,
            )
        else:
            created = services.create_route(
                actor=request.user,
                alias=form.cleaned_data["alias"],
                api=form.cleaned_data["api"],
                targets=targets,
                fallbacks=fallbacks,
                **settings,
            )
            route.pk = created.pk

    def _delete_with(self, request: HttpRequest, obj: ModelRoute) -> None:
        services.delete_route(obj, actor=request.user)


# -- budgets --------------------------------------------------------------------------------------


@admin.register(Budget)
class BudgetAdmin(ServiceDeleteMixin):
    list_display = ["__str__", "scope", "period", "spend_limit_usd", "tokens_per_minute", "requests_per_minute"]
    list_filter = ["scope", "period"]
    raw_id_fields = ["api_key", "application", "tenant"]
    fields = [
        "scope",
        "api_key",
        "application",
        "tenant",
        "period",
        "spend_limit_usd",
        "tokens_per_minute",
        "requests_per_minute",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Budget]:
        return (
            super()
            .get_queryset(request)
            .select_related("api_key__application__tenant", "application__tenant", "tenant")
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["scope", "api_key", "application", "tenant"] if obj else []

    def save_model(self, request: HttpRequest, obj: Budget, form: forms.ModelForm, change: bool) -> None:
        if change:
            services.update_budget(obj, actor=request.user, **_changes(form, services.BUDGET_FIELDS))
            return
        subject: services.BudgetSubject | None = {
            BudgetScope.KEY: obj.api_key,
            BudgetScope.APPLICATION: obj.application,
            BudgetScope.TENANT: obj.tenant,
        }.get(BudgetScope(obj.scope))
        if subject is None:  # the form's model validation matched scope and subject; a race deleted it
            raise InvalidInput("The budget's key, application or tenant is gone; choose another.")
        created = services.create_budget(
            actor=request.user,
            subject=subject,
            period=obj.period,
            spend_limit_usd=obj.spend_limit_usd,
            tokens_per_minute=obj.tokens_per_minute,
            requests_per_minute=obj.requests_per_minute,
        )
        obj.pk = created.pk

    def _delete_with(self, request: HttpRequest, obj: Budget) -> None:
        services.delete_budget(obj, actor=request.user)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ["budget", "period_start", "threshold", "spend_usd", "recipients", "sent_at"]
    list_filter = ["threshold"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# -- prompt APIs ---------------------------------------------------------------------------------
# Every save goes through llm.prompt_services (checked, audited) and every lifecycle move through
# portal.services.lifecycle (publishing generates the OpenAPI document).


class PromptApiForm(forms.ModelForm):
    class Meta:
        model = PromptApi
        fields = ["name", "slug", "owner", "description", "visibility"]


class PromptVersionInline(admin.TabularInline):
    """The API's versions at a glance; each prompt is edited on its own page."""

    model = ApiVersion
    fields = readonly_fields = ("version", "base_path", "state", "prompt_route")
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name = "version"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # versions are made and moved on the prompt version pages

    @admin.display(description="Model route")
    def prompt_route(self, obj: ApiVersion) -> str:
        prompt = PromptVersion.objects.filter(version=obj).select_related("route").first()
        return prompt.route.alias if prompt else "—"


@admin.register(PromptApi)
class PromptApiAdmin(ServiceErrorsAdmin):
    form = PromptApiForm
    list_display = ["name", "slug", "owner", "visibility", "updated_at"]
    list_filter = ["visibility", "owner"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [PromptVersionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["slug", "owner"] if obj is not None else []

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Any]:
        return {} if obj is not None else dict(self.prepopulated_fields)

    def save_model(self, request: HttpRequest, obj: PromptApi, form: forms.ModelForm, change: bool) -> None:
        # A refusal the form could not see (a permission, a race on the slug) is a message
        # and nothing saved (ServiceErrorsAdmin), never "added successfully" for no row.
        data = form.cleaned_data
        if change:
            prompt_services.update_prompt_api(
                obj, actor=request.user, **{k: data[k] for k in ("name", "description", "visibility")}
            )
        else:
            created = prompt_services.create_prompt_api(
                data["owner"],
                actor=request.user,
                slug=data["slug"],
                name=data["name"],
                description=data["description"],
                visibility=data["visibility"],
            )
            obj.pk = created.pk


class PromptVersionAdminForm(forms.ModelForm):
    """On add: which API, the version's name and base path; then the prompt. JSON is parsed
    by the portal's capped field (size, depth) and the prompt checked by the service's rules,
    each problem beside its field."""

    api = forms.ModelChoiceField(queryset=PromptApi.objects.all(), required=False, label="Prompt API")
    version_name = forms.CharField(max_length=40, required=False, label="Version", initial="v1")
    base_path = forms.CharField(max_length=200, required=False)
    input_schema = JsonField(label="Input schema (JSON Schema)")
    output_schema = JsonField(required=False, label="Output schema (JSON mode)", want_object=False)

    class Meta:
        model = PromptVersion
        fields = [
            "route",
            "system_prompt",
            "user_template",
            "input_schema",
            "output_mode",
            "output_schema",
            "temperature",
            "max_tokens",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        route = self.fields.get("route")  # absent when the prompt is frozen (read-only)
        if isinstance(route, forms.ModelChoiceField):
            route.queryset = prompt_services.available_routes()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk is None:
            for name in ("api", "version_name", "base_path"):
                if not data.get(name):
                    self.add_error(name, "Required for a new version.")
            if data.get("api") and data.get("version_name") and data.get("base_path"):
                # The version row's own rules (base path shape, reserved paths, uniqueness),
                # so the service's save cannot fail after the form passed.
                probe = ApiVersion(api=data["api"], version=data["version_name"].strip(), base_path=data["base_path"])
                try:
                    probe.full_clean()
                except forms.ValidationError as error:
                    for field, problems in error.message_dict.items():
                        target = {"version": "version_name", "base_path": "base_path"}.get(field)
                        for problem in problems:
                            self.add_error(target, problem)
        if all(name in data for name in ("input_schema", "output_schema", "user_template")):
            fields = {name: data.get(name) for name in prompt_services.PROMPT_FIELDS}
            fields["output_schema"] = data.get("output_schema") or {}
            for field, problems in prompt_services.prompt_errors(fields).items():
                for problem in problems:
                    self.add_error(field if field in self.fields else None, problem)
        return data


@admin.register(PromptVersion)
class PromptVersionAdmin(ServiceErrorsAdmin):
    form = PromptVersionAdminForm
    list_display = ["__str__", "api_name", "base_path", "state", "route", "output_mode", "updated_at"]
    list_filter = ["version__state", "output_mode", "route"]
    search_fields = ["version__api__name", "version__version", "version__base_path"]
    list_select_related = ["version", "version__api", "route"]
    actions = ["publish", "deprecate", "retire"]

    @admin.display(description="API", ordering="version__api__name")
    def api_name(self, obj: PromptVersion) -> str:
        return obj.version.api.name

    @admin.display(description="Base path")
    def base_path(self, obj: PromptVersion) -> str:
        return obj.version.base_path or ""

    @admin.display(description="State", ordering="version__state")
    def state(self, obj: PromptVersion) -> str:
        return obj.version.get_state_display()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        prompt = PromptVersionAdminForm.Meta.fields
        return ("api", "version_name", "base_path", *prompt) if obj is None else ("version", *prompt)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        if obj.version.state != VersionState.DRAFT:
            return ["version", *PromptVersionAdminForm.Meta.fields]  # frozen once published
        return ["version"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a version is retired, not deleted

    def save_model(self, request: HttpRequest, obj: PromptVersion, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        prompt = {name: data[name] for name in prompt_services.PROMPT_FIELDS if name in data}
        if "output_schema" in prompt:
            prompt["output_schema"] = prompt["output_schema"] or {}
        # A refusal is a message and nothing saved (ServiceErrorsAdmin): caught here, Django
        # went on to log and link a version that was never made (a 500).
        if change:
            # A published prompt's fields are read-only here: nothing comes in, and the
            # service refuses any change with its message.
            prompt_services.update_prompt(
                PromptVersion.objects.get(pk=obj.pk), actor=request.user, route=data.get("route"), **prompt
            )
        else:
            created = prompt_services.create_prompt_version(
                data["api"],
                actor=request.user,
                version=data["version_name"],
                base_path=data["base_path"],
                route=data["route"],
                **prompt,
            )
            obj.pk, obj.version = created.pk, created.version

    def _versions(self, queryset: QuerySet[PromptVersion]) -> QuerySet[ApiVersion]:
        return ApiVersion.objects.filter(prompt__in=queryset)

    @admin.action(description="Publish selected versions (generates their OpenAPI documents)", permissions=["change"])
    def publish(self, request: HttpRequest, queryset: QuerySet[PromptVersion]) -> None:
        for version in self._versions(queryset):
            try:
                lifecycle.publish_version(version, actor=request.user)
                self.message_user(request, f"{version} is published.", messages.SUCCESS)
            except ServiceError as error:
                self.message_user(request, f"{version}: {error.message}", messages.ERROR)

    @admin.action(description="Deprecate selected versions (asks for a sunset date)", permissions=["change"])
    def deprecate(self, request: HttpRequest, queryset: QuerySet[PromptVersion]) -> Any:
        return run_with_reason(
            self,
            request,
            queryset,
            title="Deprecate versions",
            form_class=DeprecationForm,
            apply=lambda p, data: lifecycle.deprecate_version(
                p.version, actor=request.user, sunset_at=data["sunset_at"], reason=data["reason"]
            ),
        )

    @admin.action(description="Retire selected versions (final)", permissions=["change"])
    def retire(self, request: HttpRequest, queryset: QuerySet[PromptVersion]) -> Any:
        return run_with_reason(
            self,
            request,
            queryset,
            title="Retire versions",
            form_class=DecisionForm,
            apply=lambda p, data: lifecycle.retire_version(p.version, actor=request.user, reason=data["reason"]),
        )
