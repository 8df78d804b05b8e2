"""The developer console: a tenant's applications, subscriptions and API keys.

Every lookup is scoped to the current tenant first, so another tenant's objects are 404.
Rules (roles, legal moves) are the services'; their refusals become 404s, messages or form
errors through ``service_errors`` and ``form_errors``, never 500s.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal import ratelimits
from portal.forms import ApplicationForm, KeyForm, SubscribeForm
from portal.models import ApiKey, Application, Role
from portal.services import applications as applications_service
from portal.services import keys, subscriptions
from portal.services.catalog import visible_apis
from portal.services.errors import InvalidInput
from portal.views.context import current_membership, current_tenant
from portal.views.service_errors import form_errors, service_errors


def _visible_api(request, slug):
    return get_object_or_404(visible_apis(current_tenant(request)), slug=slug)


def _membership(request):
    membership = current_membership(request)
    if membership is None:
        raise Http404("You belong to no tenant.")
    return membership


def _form_errors(form) -> str:
    """A small form's errors as one message (its page shows no inline errors)."""
    return "; ".join(e for errors in form.errors.values() for e in errors)


def _application(request, pk) -> Application:
    return get_object_or_404(Application, pk=pk, tenant=_membership(request).tenant)


@login_required
@service_errors("applications")
def applications(request):
    membership = _membership(request)
    apps = Application.objects.filter(tenant=membership.tenant).prefetch_related("subscriptions", "keys")
    form = ApplicationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with form_errors(form, "name", catch=InvalidInput) as outcome:
            app = applications_service.create_application(membership.tenant, actor=request.user, **form.cleaned_data)
        if outcome.ok:
            messages.success(request, f"Application {app.name} created.")
            return redirect("application_detail", pk=app.pk)
    return render(request, "portal/console/applications.html", {"applications": apps, "form": form})


@login_required
def application_detail(request, pk):
    app = _application(request, pk)
    return render(
        request,
        "portal/console/application.html",
        {
            "app": app,
            "subscriptions": app.subscriptions.select_related("api", "plan"),
            "keys": app.keys.all(),
            "key_form": KeyForm(),
            "edit_form": ApplicationForm(instance=app, auto_id="edit_%s"),
            "can_write": _membership(request).has_role(Role.DEVELOPER),
            "can_delete": _membership(request).has_role(Role.ADMIN),
        },
    )


@login_required
@require_POST
@service_errors("application_detail", "pk")
def application_edit(request, pk):
    app = _application(request, pk)
    form = ApplicationForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect("application_detail", pk=pk)
    app = applications_service.update_application(app, actor=request.user, **form.cleaned_data)
    messages.success(request, f"Application {app.name} saved.")
    return redirect("application_detail", pk=pk)


@login_required
@require_POST
@service_errors("application_detail", "pk")
def application_delete(request, pk):
    app = _application(request, pk)
    applications_service.delete_application(app, actor=request.user)
    messages.success(request, f"Application {app.name} deleted; its keys no longer work.")
    return redirect("applications")


@login_required
@service_errors()
def subscribe(request, slug):
    api = _visible_api(request, slug)
    membership = _membership(request)
    form = SubscribeForm(
        request.POST or None,
        applications=Application.objects.filter(tenant=membership.tenant),
        plans=api.plans.filter(is_active=True),
        initial={"application": request.GET.get("application")},
    )
    if request.method == "POST" and form.is_valid():
        with form_errors(form) as outcome:
            sub, created = subscriptions.request_subscription(
                form.cleaned_data["application"], api, form.cleaned_data["plan"], actor=request.user
            )
        if outcome.ok:
            if not created:
                messages.info(request, f"{sub.application} already has a {sub.state} subscription to {api.name}.")
            elif sub.state == "approved":
                messages.success(request, f"Subscribed: {sub.application} can call {api.name} now.")
            else:
                messages.success(request, f"Requested: an administrator will review access to {api.name}.")
            return redirect("application_detail", pk=sub.application_id)
    return render(request, "portal/console/subscribe.html", {"api": api, "form": form})


def _key(request, app_pk, key_pk) -> ApiKey:
    return get_object_or_404(ApiKey, pk=key_pk, application=_application(request, app_pk))


def _show_secret(request, app, key, secret, verb):
    # The one and only time the secret is shown: the page is not cached anywhere.
    response = render(request, "portal/console/secret.html", {"app": app, "key": key, "secret": secret, "verb": verb})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
@ratelimits.limited(ratelimits.KEY_CREATION)
@service_errors("application_detail", "pk")
def key_create(request, pk):
    app = _application(request, pk)
    form = KeyForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect("application_detail", pk=pk)
    key, secret = keys.create_api_key(
        app, actor=request.user, name=form.cleaned_data["name"], expires_at=form.cleaned_data["expires_at"]
    )
    return _show_secret(request, app, key, secret, "created")


@login_required
@require_POST
@ratelimits.limited(ratelimits.KEY_ROTATION)
@service_errors("application_detail", "pk")
def key_rotate(request, pk, key_pk):
    key = _key(request, pk, key_pk)
    new, secret = keys.rotate_api_key(key, actor=request.user)
    return _show_secret(request, key.application, new, secret, "rotated")


@login_required
@require_POST
@service_errors("application_detail", "pk")
def key_revoke(request, pk, key_pk):
    key = _key(request, pk, key_pk)
    keys.revoke_api_key(key, actor=request.user)
    messages.success(request, f"Key {key.prefix}… is revoked; the gateway refuses it within a second.")
    return redirect("application_detail", pk=pk)
