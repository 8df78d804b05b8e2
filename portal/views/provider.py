"""Provider pages: the owners and admins of a team run the APIs their team owns.

Thin callers of ``portal.services.provider``, ``lifecycle`` and ``subscriptions``, which
decide who may do what. Every lookup starts from the APIs the person manages, so another
team's API, version, plan or subscription is a 404; a refused change is a form error or a
message, never a 500.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.forms import DecisionForm, DeprecateForm, PlanForm, ProviderApiForm, VersionForm, VersionUpdateForm
from portal.models import Api, ApiVersion, Subscription, SubscriptionState
from portal.services import lifecycle, provider, subscriptions
from portal.views.service_errors import form_errors, service_errors


def _errors(form: Any) -> str:
    return "; ".join(str(e) for errors in form.errors.values() for e in errors)


def _api(request: HttpRequest, slug: str) -> Api:
    return provider.managed_api(request.user, slug)  # NotFound: a 404 (service_errors)


def _version(api: Api, pk: int) -> ApiVersion:
    version = api.versions.filter(pk=pk).first()
    if version is None:
        raise Http404("No such version of this API.")
    return version


@login_required
@service_errors()
def apis(request: HttpRequest) -> HttpResponse:
    tenants = provider.managed_tenants(request.user)
    form = ProviderApiForm(request.POST or None, tenants=tenants)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        with form_errors(form) as outcome:
            api = provider.create_api(
                data["tenant"],
                actor=request.user,
                slug=data["slug"],
                name=data["name"],
                description=data["description"],
                visibility=data["visibility"],
            )
        if outcome.ok:
            messages.success(request, f"{api.name} created. Add a version and a plan, then publish it.")
            return redirect("provider_api", slug=api.slug)
    pending = provider.subscription_requests(request.user).filter(state=SubscriptionState.PENDING).count()
    return render(
        request,
        "portal/provider/apis.html",
        {
            "apis": provider.managed_apis(request.user).prefetch_related("versions", "plans"),
            "form": form,
            "can_create": tenants.exists(),
            "can_create_prompt": tenants.exists(),
            "pending_count": pending,
        },
    )


def api_page(request: HttpRequest, api: Api, **forms: Any) -> HttpResponse:
    from portal.views import prompts  # prompt APIs' versions are made by their own form

    default_version_form = prompts.version_form(api) if api.is_prompt else VersionForm()
    context = {
        "api": api,
        "versions": api.versions.prefetch_related("targets").select_related("prompt__route").order_by("-created_at"),
        "plans": api.plans.all(),
        "version_form": forms.get("version_form") or default_version_form,
        "plan_form": forms.get("plan_form") or PlanForm(),
        "deprecate_form": DeprecateForm(),
    }
    status = 400 if forms else 200
    return render(request, "portal/provider/api.html", context, status=status)


@login_required
@service_errors()
def api_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return api_page(request, _api(request, slug))


@login_required
@require_POST
@service_errors()
def version_create(request: HttpRequest, slug: str) -> HttpResponse:
    api = _api(request, slug)
    if api.is_prompt:
        from portal.views import prompts

        return prompts.version_create(request, slug)
    form = VersionForm(request.POST, request.FILES)
    if form.is_valid():
        data = form.cleaned_data
        with form_errors(form) as outcome:
            version = provider.create_version(
                api,
                actor=request.user,
                version=data["version"],
                base_path=data["base_path"],
                targets=data["targets"],
                openapi=data["openapi"],
                **form.policy(),
            )
        if outcome.ok:
            messages.success(request, f"Version {version.version} created as a draft.")
            return redirect("provider_api", slug=api.slug)
    return api_page(request, api, version_form=form)


@login_required
@service_errors()
def version_edit(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Change a version's upstream targets, policy or OpenAPI document."""
    api = _api(request, slug)
    version = _version(api, pk)
    if api.is_prompt:
        return redirect("provider_prompt", slug=api.slug, pk=version.pk)
    initial = {
        "targets": "\n".join(f"{t.url} {t.weight}" for t in version.targets.all()),
        **{name: getattr(version, name) for name in ("connect_timeout_ms", "read_timeout_ms", "total_timeout_ms")},
        "retries": version.retries,
        "cache_ttl_seconds": version.cache_ttl_seconds,
    }
    form = VersionUpdateForm(request.POST or None, request.FILES or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            with form_errors(form) as outcome:
                provider.update_version(
                    version,
                    actor=request.user,
                    targets=form.cleaned_data["targets"],
                    openapi=form.cleaned_data["openapi"],
                    **form.policy(),
                )
            if outcome.ok:
                messages.success(request, f"Version {version.version} saved.")
                return redirect("provider_api", slug=api.slug)
        status = 400
    return render(
        request, "portal/provider/version.html", {"api": api, "version": version, "form": form}, status=status
    )


@login_required
@require_POST
@service_errors()
def plan_create(request: HttpRequest, slug: str) -> HttpResponse:
    api = _api(request, slug)
    form = PlanForm(request.POST)
    # The model form checks shapes; the service checks the rules (and the name's uniqueness).
    form.instance.api = api
    if form.is_valid():
        data = form.cleaned_data
        with form_errors(form) as outcome:
            plan = provider.create_plan(api, actor=request.user, **data)
        if outcome.ok:
            messages.success(request, f"Plan {plan.name} created.")
            return redirect("provider_api", slug=api.slug)
    return api_page(request, api, plan_form=form)


@login_required
@require_POST
@service_errors("provider_api", "slug")
def version_move(request: HttpRequest, slug: str, pk: int, move: str) -> HttpResponse:
    api = _api(request, slug)
    version = _version(api, pk)
    if move == "publish":
        lifecycle.publish_version(version, actor=request.user)
    elif move == "deprecate":
        form = DeprecateForm(request.POST)
        if not form.is_valid():
            messages.error(request, _errors(form))
            return redirect("provider_api", slug=api.slug)
        lifecycle.deprecate_version(
            version,
            actor=request.user,
            sunset_at=form.cleaned_data["sunset_at"],
            reason=form.cleaned_data["reason"],
        )
    elif move == "retire":
        lifecycle.retire_version(version, actor=request.user, reason=request.POST.get("reason", "")[:500])
    else:
        raise Http404("No such move.")
    messages.success(request, f"Version {version.version}: {move} done.")
    return redirect("provider_api", slug=api.slug)


@login_required
def requests(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "portal/provider/requests.html",
        {"subscriptions": provider.subscription_requests(request.user)[:200], "form": DecisionForm()},
    )


@login_required
@require_POST
@service_errors("provider_requests")
def decide(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    subscription = provider.subscription_requests(request.user).filter(pk=pk).first()
    if subscription is None:
        raise Http404("No such subscription request to your APIs.")
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, _errors(form))
        return redirect("provider_requests")
    reason = form.cleaned_data["reason"]
    if decision == "approve":
        decided: Subscription = subscriptions.approve_subscription(subscription, actor=request.user, reason=reason)
    elif decision == "reject":
        decided = subscriptions.reject_subscription(subscription, actor=request.user, reason=reason)
    else:
        raise Http404("No such decision.")
    messages.success(
        request, f"{decided.application.name} on {decided.api.name}: {decided.get_state_display().lower()}."
    )
    return redirect("provider_requests")
