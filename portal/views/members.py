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
from portal.services.errors import InvalidInput, NotFound, ServiceError
from portal.views.context import SESSION_KEY, current_membership


def _membership_or_404(request) -> Membership:
    membership = current_membership(request)
    if membership is None:
        raise Http404("You belong to no team.")
    return membership


@login_required
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
            try:
                invitation, _token = tenants.invite_member(
                    mine.tenant, form.cleaned_data["email"], form.cleaned_data["role"], actor=request.user
                )
            except InvalidInput as error:
                form.add_error("email", error.message)
                status = 400
            except ServiceError as error:
                messages.error(request, error.message)
                return redirect("members")
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
def member_update(request, pk):
    tenant = _membership_or_404(request).tenant
    target = get_object_or_404(Membership, pk=pk, tenant=tenant)
    try:
        if request.POST.get("action") == "remove":
            tenants.remove_member(target, actor=request.user)
            messages.success(request, f"{target.user.username} left {tenant.name}.")
        else:
            tenants.change_role(target, request.POST.get("role", ""), actor=request.user)
            messages.success(request, f"{target.user.username} is now {target.get_role_display().lower()}.")
    except ServiceError as error:
        messages.error(request, error.message)
    return redirect("members")


@login_required
def accept_invitation(request, token):
    if request.method == "POST":
        try:
            membership = tenants.accept_invitation(token, actor=request.user)
        except NotFound as error:
            raise Http404(error.message) from error
        except ServiceError as error:
            messages.error(request, error.message)
            return redirect("catalog")
        request.session[SESSION_KEY] = membership.tenant_id
        messages.success(request, f"Welcome to {membership.tenant.name}.")
        return redirect("applications")
    return render(request, "portal/console/accept_invitation.html", {"token": token})
