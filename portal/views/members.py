"""Team members: list, invite by email with a role, change roles, remove; accept an invitation."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.mail import send_mail
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from portal.models import Invitation, Membership, Role
from portal.services import tenants
from portal.services.errors import NotFound, ServiceError
from portal.views.context import SESSION_KEY, current_membership


def _membership_or_404(request) -> Membership:
    membership = current_membership(request)
    if membership is None:
        raise Http404("You belong to no team.")
    return membership


@login_required
def members(request):
    mine = _membership_or_404(request)
    if request.method == "POST":
        try:
            invitation, token = tenants.invite_member(
                mine.tenant, request.POST.get("email", ""), request.POST.get("role", Role.DEVELOPER), request.user
            )
        except ServiceError as error:
            messages.error(request, error.message)
        else:
            link = request.build_absolute_uri(reverse("accept_invitation", args=[token]))
            send_mail(
                f"[Portico] {request.user.username} invites you to {mine.tenant.name}",
                f"Join {mine.tenant.name} on Portico as {invitation.get_role_display().lower()}:\n\n{link}\n\n"
                "The link works once, for 7 days.",
                settings.DEFAULT_FROM_EMAIL,
                [invitation.email],
            )
            messages.success(request, f"Invitation sent to {invitation.email}.")
        return redirect("members")
    return render(
        request,
        "portal/console/members.html",
        {
            "tenant": mine.tenant,
            "memberships": mine.tenant.memberships.select_related("user").order_by("user__username"),
            "invitations": Invitation.objects.filter(tenant=mine.tenant, accepted_at__isnull=True),
            "roles": Role.choices,
            "can_manage": mine.has_role(Role.ADMIN),
        },
    )


@login_required
@require_POST
def member_update(request, pk):
    tenant = _membership_or_404(request).tenant
    target = get_object_or_404(Membership, pk=pk, tenant=tenant)
    try:
        if request.POST.get("action") == "remove":
            tenants.remove_member(target, request.user)
            messages.success(request, f"{target.user.username} left {tenant.name}.")
        else:
            tenants.change_role(target, request.POST.get("role", ""), request.user)
            messages.success(request, f"{target.user.username} is now {target.get_role_display().lower()}.")
    except ServiceError as error:
        messages.error(request, error.message)
    return redirect("members")


@login_required
def accept_invitation(request, token):
    if request.method == "POST":
        try:
            membership = tenants.accept_invitation(token, request.user)
        except NotFound as error:
            raise Http404(error.message) from error
        except ServiceError as error:
            messages.error(request, error.message)
            return redirect("catalog")
        request.session[SESSION_KEY] = membership.tenant_id
        messages.success(request, f"Welcome to {membership.tenant.name}.")
        return redirect("applications")
    return render(request, "portal/console/accept_invitation.html", {"token": token})
