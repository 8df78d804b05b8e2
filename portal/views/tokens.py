"""Personal access tokens page: create one for the management REST API (shown once), see
your tokens by prefix, revoke one. The rules live in portal.services.tokens."""

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal import ratelimits
from portal.models import PersonalAccessToken
from portal.services import tokens
from portal.views.service_errors import form_errors, service_errors

EXPIRY_CHOICES = [("30", "30 days"), ("90", "90 days"), ("365", "1 year"), ("", "Never")]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="What it is for, e.g. “laptop” or “CI”.")
    expires_in = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="90", required=False, label="Expires in")


@login_required
@ratelimits.limited(ratelimits.TOKEN_CREATION, method="POST")
@service_errors("access_tokens")
def token_list(request):
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in"]
        expires_at = timezone.now() + timedelta(days=int(days)) if days else None
        with form_errors(form, "name") as outcome:
            token, secret = tokens.create_access_token(
                actor=request.user, name=form.cleaned_data["name"], expires_at=expires_at
            )
        if outcome.ok:
            # The one and only time the token is shown: the page is not cached anywhere.
            response = render(request, "portal/tokens/secret.html", {"token": token, "secret": secret})
            response["Cache-Control"] = "no-store"
            return response
    mine = PersonalAccessToken.objects.filter(user=request.user).order_by("-created_at")
    return render(request, "portal/tokens/tokens.html", {"tokens": mine, "form": form, "now": timezone.now()})


@login_required
@require_POST
@service_errors("access_tokens")
def token_revoke(request, pk):
    token = get_object_or_404(PersonalAccessToken, pk=pk, user=request.user)
    tokens.revoke_access_token(token, actor=request.user)
    messages.success(request, f"Token {token.name} ({token.prefix}…) revoked; it no longer works.")
    return redirect("access_tokens")
