"""Team members: list, invite by email with a role, change roles, remove; accept an invitation."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal import ratelimits
from portal.forms import InvitationForm
from portal.models import Invitation, Membership, Role
from portal.services import tenants
from portal.services.errors import InvalidInput
from portal.views.context import SESSION_KEY, current_membership
from portal.views.service_errors import form_errors, service_errors


def _membership_or_404(request) -> Membership:
    membership = current_membership(request)
    if membership is None:
        raise Http404("You belong to no team.")
    return membership


@login_required
@service_errors("members")
def members(request):
    mine = _membership_or_404(request)
    form = InvitationForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        limits = ratelimits.invitation_limits(mine.tenant_id)
        if any(limit.reached(request) for limit in limits):
            form.add_error(None, "Too many invitations for now; try again later.")
            status = 429
        else:
            # Bad input is an error on the address; any other refusal (a mail server down, too
            # small a role) a message above the page (service_errors).
            with form_errors(form, "email", catch=InvalidInput) as outcome:
                invitation, _token = tenants.invite_member(
                    mine.tenant, form.cleaned_data["email"], form.cleaned_data["role"], actor=request.user
                )
            if not outcome.ok:
                status = 400
            else:
                for limit in limits:
                    limit.count(request)
                messages.success(request, f"Invitation sent to {invitation.email}.")
                return redirect("members")
    elif request.method == "POST":
        status = 400
    return render(
        request,
        "portal/console/members.html",
        {
            "tenant": mine.tenant,
            "memberships": mine.tenant.memberships.select_related("user").order_by("user__username"),
            "invitations": Invitation.objects.filter(tenant=mine.tenant, accepted_at__isnull=True),
            "roles": Role.choices,
            "can_manage": mine.has_role(Role.ADMIN),
            "form": form,
        },
        status=status,
    )


@login_required
@require_POST
@service_errors("members")
def member_update(request, pk):
    tenant = _membership_or_404(request).tenant
    target = get_object_or_404(Membership, pk=pk, tenant=tenant)
    if request.POST.get("action") == "remove":
        tenants.remove_member(target, actor=request.user)
        messages.success(request, f"{target.user.username} left {tenant.name}.")
    else:
        changed = tenants.change_role(target, request.POST.get("role", ""), actor=request.user)
        messages.success(request, f"{changed.user.username} is now {changed.get_role_display().lower()}.")
    return redirect("members")


@login_required
@service_errors("catalog")
def accept_invitation(request, token):
    if request.method == "POST":
        membership = tenants.accept_invitation(token, actor=request.user)
        request.session[SESSION_KEY] = membership.tenant_id
        messages.success(request, f"Welcome to {membership.tenant.name}.")
        return redirect("applications")
    return render(request, "portal/console/accept_invitation.html", {"token": token})
