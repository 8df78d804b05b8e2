"""Sign-up, log-in and tenant switching."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST
from django_ratelimit.decorators import ratelimit

from portal import ratelimits
from portal.forms import SignupForm, SwitchTenantForm, safe_next
from portal.models import Membership
from portal.services.tenants import create_tenant
from portal.views.context import SESSION_KEY


@ratelimit(key="ip", rate=ratelimits.SIGNUP_PER_IP, method="POST", block=True)
def signup(request):
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save(commit=False)
        # An account waiting for approval cannot log in: Django refuses inactive users.
        user.is_active = not settings.PORTICO_SIGNUP_REQUIRES_APPROVAL
        user.save()
        create_tenant(f"{user.username}'s team", actor=user, is_personal=True)
        if not user.is_active:
            return render(request, "portal/accounts/pending.html", {"email": user.email})
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome to Portico. Find an API in the catalog to get started.")
        return redirect("catalog")
    return render(request, "portal/accounts/signup.html", {"form": form})


@method_decorator(ratelimit(key="ip", rate=ratelimits.LOGIN_PER_IP, method="POST", block=True), name="post")
# Keyed on the name as it is normalised, not as typed: " alice", "alice " and "ａｌｉｃｅ" all
# log in as alice (the form applies NFKC and strips), so they must share her counter.
@method_decorator(
    ratelimit(key=ratelimits.login_username, rate=ratelimits.LOGIN_PER_ACCOUNT, method="POST", block=True),
    name="post",
)
class LoginView(auth_views.LoginView):
    template_name = "portal/accounts/login.html"


@method_decorator(ratelimit(key="ip", rate=ratelimits.RESET_PER_IP, method="POST", block=True), name="post")
@method_decorator(
    ratelimit(key=ratelimits.reset_address, rate=ratelimits.RESET_PER_ADDRESS, method="POST", block=True),
    name="post",
)
class PasswordResetView(auth_views.PasswordResetView):
    template_name = "portal/accounts/password_reset.html"


@login_required
@require_POST
def switch_tenant(request):
    form = SwitchTenantForm(request.POST, request=request)
    if not form.is_valid():
        messages.error(request, "Choose one of your teams to switch to.")
        return redirect(safe_next(request, request.POST.get("next")) or "applications")
    membership = get_object_or_404(Membership, user=request.user, tenant_id=form.cleaned_data["tenant"])
    request.session[SESSION_KEY] = membership.tenant_id
    return redirect(form.cleaned_data["next"] or "applications")
