"""Django admin: operators run the catalog, the lifecycle and subscription approvals here.

State changes go through the services (never a plain form save), so the admin, the portal
and the REST API enforce the same rules and leave the same audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from portal.models import (
    Api,
    ApiKey,
    ApiVersion,
    Application,
    AuditEvent,
    Membership,
    Plan,
    Role,
    Subscription,
    Tag,
    Tenant,
    UpstreamTarget,
    VersionState,
)
from portal.services import admin_edits, applications, keys, lifecycle, subscriptions, tenants
from portal.services.errors import InvalidInput, ServiceError


class DecisionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=False)


class DeprecationForm(DecisionForm):
    sunset_at = forms.DateTimeField(
        required=False,
        help_text="When the version stops working (YYYY-MM-DD HH:MM). Empty: 90 days from now.",
    )


def run_with_reason(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    title: str,
    form_class: type[DecisionForm],
    apply: Callable[[Any, dict[str, Any]], object],
    reason_required: bool = False,
) -> TemplateResponse | None:
    """Show a form asking for a reason, then apply ``apply(obj, cleaned_data)`` to each object."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        if reason_required and not form.cleaned_data["reason"].strip():
            form.add_error("reason", "A reason is required: the developer will read it.")
        else:
            done = 0
            for obj in queryset:
                try:
                    apply(obj, form.cleaned_data)
                    done += 1
                except ServiceError as error:
                    modeladmin.message_user(request, f"{obj}: {error.message}", messages.ERROR)
            if done:
                modeladmin.message_user(request, f"{title}: {done} done.", messages.SUCCESS)
            return None
    return TemplateResponse(
        request,
        "admin/portal/reason_form.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "objects": queryset,
            "form": form,
            "action": request.POST.get("action"),
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "opts": modeladmin.model._meta,
        },
    )


def delete_each(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any], delete: Callable[..., None]
) -> None:
    """The admin's bulk delete, one service call per object (each audited, its row locked);
    a refusal is a message, not a 500."""
    for obj in queryset:
        try:
            delete(obj, actor=request.user)
        except ServiceError as error:
            modeladmin.message_user(request, f"{obj}: {error.message}", messages.ERROR)


class ServiceErrorsAdmin(admin.ModelAdmin):
    """A service refusing a change form's save (a rule the form could not see: the team's
    last owner, a published version's base path, a concurrent change) is shown as a message
    on the page again, not a 500. Django's change view runs in one transaction, left by the
    exception: everything the submit saved before the refusal is rolled back with it."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceError as error:
            self.message_user(request, f"Nothing was saved: {error.message}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(ServiceErrorsAdmin):
    """Members are changed through ``portal.services.tenants``: the team keeps an owner and
    every change is audited, as on the portal's team page."""

    list_display = ["name", "slug", "is_personal", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        rows = formset.save(commit=False)
        changed = {id(row): fields for row, fields in formset.changed_objects}
        for row in rows:
            if row.pk is not None and "user" in changed.get(id(row), []):
                raise InvalidInput("A membership's person cannot be swapped; remove it and add the other person.")
        # New owners first, demotions next, removals last: handing a team over in one submit
        # (promote one, demote or remove the other) never leaves it without an owner between two steps.
        added = [row for row in rows if row.pk is None]
        for row in sorted(added, key=lambda r: r.role != Role.OWNER):
            row.pk = tenants.add_member(form.instance, row.user, row.role, actor=request.user).pk
        role_changes = [row for row in rows if row.pk is not None and "role" in changed.get(id(row), [])]
        for row in sorted(role_changes, key=lambda r: r.role != Role.OWNER):
            tenants.change_role(row, row.role, actor=request.user)
        for row in formset.deleted_objects:
            tenants.remove_member(row, actor=request.user)


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


class PlanInline(admin.TabularInline):
    model = Plan
    extra = 0


class ApiVersionInline(admin.TabularInline):
    model = ApiVersion
    fields = ["version", "base_path", "state", "sunset_at"]
    readonly_fields = ["state", "sunset_at"]
    extra = 0
    show_change_link = True


class ServiceSavedAdmin(ServiceErrorsAdmin):
    """Plain edits of routable configuration go through ``admin_edits``: audited, checked
    against the operator's permissions and the rules that keep routed versions reachable,
    and published to the gateways on commit."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        admin_edits.save_object(obj, actor=request.user, changed=form.changed_data)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        admin_edits.delete_object(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        delete_each(self, request, queryset, admin_edits.delete_object)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        instances = formset.save(commit=False)
        changed = {id(obj): fields for obj, fields in formset.changed_objects}
        admin_edits.save_inline(
            actor=request.user,
            saved=[(obj, changed.get(id(obj), [])) for obj in instances],
            deleted=list(formset.deleted_objects),
        )
        formset.save_m2m()


@admin.register(Api)
class ApiAdmin(ServiceSavedAdmin):
    list_display = ["name", "slug", "kind", "owner", "visibility", "updated_at"]
    list_filter = ["kind", "visibility", "tags"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["tags"]
    inlines = [ApiVersionInline, PlanInline]


class UpstreamTargetInline(admin.TabularInline):
    model = UpstreamTarget
    extra = 1


@admin.register(ApiVersion)
class ApiVersionAdmin(ServiceSavedAdmin):
    list_display = ["api", "version", "base_path", "state", "sunset_at", "published_at"]
    list_filter = ["state", "api"]
    search_fields = ["api__name", "version", "base_path"]
    readonly_fields = ["state", "published_at", "deprecated_at", "sunset_at", "retired_at"]
    inlines = [UpstreamTargetInline]
    actions = ["publish", "deprecate", "retire"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Once routed, a version keeps its address (admin_edits refuses the change anyway).
        if obj is not None and obj.state != VersionState.DRAFT:
            return [*self.readonly_fields, *admin_edits.ROUTED_BY]
        return list(self.readonly_fields)

    @admin.action(description="Publish selected versions", permissions=["change"])
    def publish(self, request, queryset):
        for version in queryset:
            try:
                lifecycle.publish_version(version, actor=request.user)
                self.message_user(request, f"{version} is published.", messages.SUCCESS)
            except ServiceError as error:
                self.message_user(request, f"{version}: {error.message}", messages.ERROR)

    @admin.action(description="Deprecate selected versions (asks for a sunset date)", permissions=["change"])
    def deprecate(self, request, queryset):
        return run_with_reason(
            self,
            request,
            queryset,
            title="Deprecate versions",
            form_class=DeprecationForm,
            apply=lambda v, data: lifecycle.deprecate_version(
                v, actor=request.user, sunset_at=data["sunset_at"], reason=data["reason"]
            ),
        )

    @admin.action(description="Retire selected versions (final)", permissions=["change"])
    def retire(self, request, queryset):
        return run_with_reason(
            self,
            request,
            queryset,
            title="Retire versions",
            form_class=DecisionForm,
            apply=lambda v, data: lifecycle.retire_version(v, actor=request.user, reason=data["reason"]),
        )


@admin.register(Plan)
class PlanAdmin(ServiceSavedAdmin):
    list_display = [
        "api",
        "name",
        "requests_per_second",
        "requests_per_minute",
        "daily_quota",
        "monthly_quota",
        "requires_approval",
        "is_active",
    ]
    list_filter = ["requires_approval", "is_active", "api"]


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "created_by", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["name", "tenant__name"]

    def delete_model(self, request: HttpRequest, obj: Application) -> None:
        # Its keys stop at the gateway as soon as this commits.
        applications.delete_application(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Application]) -> None:
        delete_each(self, request, queryset, applications.delete_application)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["application", "tenant_name", "api", "plan", "state", "requested_at", "decided_by", "reason"]
    list_filter = ["state", "api", "application__tenant"]
    search_fields = ["application__name", "api__name", "application__tenant__name"]
    readonly_fields = ["state", "requested_by", "requested_at", "decided_by", "decided_at", "reason"]
    list_select_related = ["application__tenant", "api", "plan", "decided_by"]
    actions = ["approve", "reject", "revoke"]

    @admin.display(description="Tenant", ordering="application__tenant__name")
    def tenant_name(self, obj):
        return obj.application.tenant.name

    def has_add_permission(self, request):
        # Subscriptions are requested by developers; an admin-made one would skip the rules.
        return False

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "application", "api", "plan"] if obj else self.readonly_fields

    def delete_model(self, request: HttpRequest, obj: Subscription) -> None:
        subscriptions.delete_subscription(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        delete_each(self, request, queryset, subscriptions.delete_subscription)

    @admin.action(description="Approve selected subscriptions", permissions=["change"])
    def approve(self, request, queryset):
        return run_with_reason(
            self,
            request,
            queryset,
            title="Approve subscriptions",
            form_class=DecisionForm,
            apply=lambda s, data: subscriptions.approve_subscription(s, actor=request.user, reason=data["reason"]),
        )

    @admin.action(description="Reject selected subscriptions", permissions=["change"])
    def reject(self, request, queryset):
        return run_with_reason(
            self,
            request,
            queryset,
            title="Reject subscriptions",
            form_class=DecisionForm,
            reason_required=True,
            apply=lambda s, data: subscriptions.reject_subscription(s, actor=request.user, reason=data["reason"]),
        )

    @admin.action(description="Revoke selected subscriptions", permissions=["change"])
    def revoke(self, request, queryset):
        return run_with_reason(
            self,
            request,
            queryset,
            title="Revoke subscriptions",
            form_class=DecisionForm,
            apply=lambda s, data: subscriptions.revoke_subscription(s, actor=request.user, reason=data["reason"]),
        )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "application", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["application__tenant"]
    search_fields = ["prefix", "name", "application__name"]
    # The secret hash is never shown; only the prefix identifies a key to a human.
    fields = ["application", "name", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # keys are issued by the key service, which returns the secret once

    def delete_model(self, request: HttpRequest, obj: ApiKey) -> None:
        # The gateway refuses the key as soon as this commits, not at its next full reload.
        keys.delete_api_key(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        delete_each(self, request, queryset, keys.delete_api_key)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "action", "object_type", "object_repr", "tenant"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_repr", "actor__username", "action"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
