"""Forms of the developer portal. Validation of business rules stays in the services."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.utils.http import url_has_allowed_host_and_scheme

from portal.models import Application, Plan, Role
from portal.services.tenants import MAX_EMAIL_LENGTH


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=True, help_text="For password resets and approval notices.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self):
        email = self.cleaned_data["email"].lower()
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email exists. Log in or reset your password.")
        return email


# The largest id a database row can have (PostgreSQL bigint, SQLite integer): larger ones
# overflow the driver instead of finding nothing.
MAX_ID = 2**63 - 1


class SwitchTenantForm(forms.Form):
    """The tenant switcher: which team, and a page of this site to go back to."""

    tenant = forms.IntegerField(min_value=1, max_value=MAX_ID)
    next = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args, request, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean_next(self) -> str:
        return safe_next(self.request, self.cleaned_data["next"])


def safe_next(request, url: str | None) -> str:
    """``url`` if it stays on this site (same host, no scheme change to http), else ""."""
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return ""


class InvitationForm(forms.Form):
    """Whom to invite and as what. The service checks the address again (and the roles)."""

    email = forms.EmailField(max_length=MAX_EMAIL_LENGTH)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)


class ApplicationForm(forms.ModelForm):
    class Meta:
        model = Application
        fields = ("name", "description")
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}


class SubscribeForm(forms.Form):
    application = forms.ModelChoiceField(queryset=Application.objects.none())
    plan = forms.ModelChoiceField(queryset=Plan.objects.none(), widget=forms.RadioSelect, empty_label=None)

    def __init__(self, *args, applications, plans, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["application"].queryset = applications
        self.fields["plan"].queryset = plans
        self.fields["plan"].label_from_instance = lambda plan: (
            f"{plan.name} — {limits_text(plan)}" + (" (needs approval)" if plan.requires_approval else "")
        )


class KeyForm(forms.Form):
    name = forms.CharField(max_length=80, required=False)
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        help_text="Optional, YYYY-MM-DD HH:MM (UTC).",
        widget=forms.DateTimeInput(attrs={"placeholder": "2027-01-31 00:00"}),
    )


def limits_text(plan: Plan) -> str:
    parts = []
    if plan.requests_per_second:
        parts.append(f"{plan.requests_per_second}/s")
    if plan.requests_per_minute:
        parts.append(f"{plan.requests_per_minute}/min")
    if plan.daily_quota:
        parts.append(f"{plan.daily_quota:,}/day")
    if plan.monthly_quota:
        parts.append(f"{plan.monthly_quota:,}/month")
    return ", ".join(parts) or "no limits"
