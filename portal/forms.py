"""Forms of the developer portal. Validation of business rules stays in the services."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.utils.http import url_has_allowed_host_and_scheme

from portal.models import Application, Plan, Role, Tenant
from portal.models.catalog import Visibility
from portal.services.errors import InvalidInput
from portal.services.provider import (
    MAX_CACHE_TTL_SECONDS,
    MAX_OPENAPI_BYTES,
    MAX_TIMEOUT_MS,
    VERSION_POLICY_FIELDS,
    TargetSpec,
    parse_openapi,
)
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


# --- Provider self-service (a team that owns an API runs it) ---------------------------------

MAX_TARGET_LINES = 16


class ProviderApiForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.none(), label="Team", empty_label=None)
    name = forms.CharField(max_length=120)
    slug = forms.SlugField(max_length=80, help_text="In the catalog's address: /apis/<slug>/.")
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.PUBLIC)

    def __init__(self, *args, tenants, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tenant"].queryset = tenants


def parse_targets(text: str) -> list[TargetSpec]:
    """Upstream targets written one a line: ``URL`` or ``URL WEIGHT``."""
    targets = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_TARGET_LINES:
        raise forms.ValidationError(f"At most {MAX_TARGET_LINES} upstream targets.")
    for line in lines:
        parts = line.split()
        weight_ok = len(parts) < 2 or (parts[1].isascii() and parts[1].isdigit())  # "²".isdigit(): int() fails
        if len(parts) > 2 or not weight_ok or len(parts[-1]) > 300:
            raise forms.ValidationError(f"Write each target as 'URL' or 'URL WEIGHT': {line[:80]!r}.")
        weight = int(parts[1]) if len(parts) == 2 and len(parts[1]) <= 9 else 100
        targets.append(TargetSpec(url=parts[0], weight=weight))
    return targets


class VersionForm(forms.Form):
    version = forms.CharField(max_length=40, initial="v1")
    base_path = forms.CharField(max_length=200, help_text="Where the gateway serves it, e.g. /maps/v1.")
    targets = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "https://maps.internal.example.com 100"}),
        help_text="Upstream targets, one a line: URL and an optional weight.",
        max_length=6000,
    )
    connect_timeout_ms = forms.IntegerField(min_value=1, max_value=MAX_TIMEOUT_MS, initial=2000)
    read_timeout_ms = forms.IntegerField(min_value=1, max_value=MAX_TIMEOUT_MS, initial=30000)
    total_timeout_ms = forms.IntegerField(min_value=1, max_value=MAX_TIMEOUT_MS, initial=60000)
    retries = forms.IntegerField(min_value=0, max_value=5, initial=1)
    cache_ttl_seconds = forms.IntegerField(
        min_value=0, max_value=MAX_CACHE_TTL_SECONDS, initial=0, help_text="0 turns the cache off."
    )
    openapi = forms.FileField(required=False, label="OpenAPI document", help_text="JSON or YAML, OpenAPI 3.")

    def clean_targets(self) -> list[TargetSpec]:
        return parse_targets(self.cleaned_data["targets"])

    def clean_openapi(self) -> dict | None:
        upload = self.cleaned_data.get("openapi")
        if not upload:
            return None
        if upload.size > MAX_OPENAPI_BYTES:
            raise forms.ValidationError(f"The document is larger than {MAX_OPENAPI_BYTES // 1024} KiB.")
        try:
            return parse_openapi(upload.read(MAX_OPENAPI_BYTES + 1))
        except InvalidInput as error:
            raise forms.ValidationError(error.message) from error

    def policy(self) -> dict:
        return {name: self.cleaned_data[name] for name in VERSION_POLICY_FIELDS if name in self.cleaned_data}


class VersionUpdateForm(VersionForm):
    """A version's targets, policy and document; its name and base path stay (clients call them)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["version"]
        del self.fields["base_path"]


class PlanForm(forms.ModelForm):
    class Meta:
        model = Plan
        fields = (
            "name",
            "description",
            "requests_per_second",
            "requests_per_minute",
            "daily_quota",
            "monthly_quota",
            "requires_approval",
        )


class DeprecateForm(forms.Form):
    sunset_at = forms.DateTimeField(
        label="Sunset", help_text="YYYY-MM-DD HH:MM (UTC), in the future.", widget=forms.DateTimeInput()
    )
    reason = forms.CharField(required=False, max_length=500)


class DecisionForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500)
