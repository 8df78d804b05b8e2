"""The portal's abuse limits in one place: what each one counts, how often, and on what key.

django-ratelimit counts in the shared cache (Redis), so every portal worker sees one
counter; while Redis is away ``portal.cache`` counts in each process instead. Keys that come
from what a person typed are normalised first, so that spellings the application treats as
one name (``" alice"``, ``"alice "``, ``"ＡＬＩＣＥ"``) share one counter.
"""

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django_ratelimit import ALL
from django_ratelimit.core import get_usage
from django_ratelimit.decorators import ratelimit

# Per client address and per account name, on the log-in form.
LOGIN_PER_IP = "20/m"
LOGIN_PER_ACCOUNT = "10/m"
SIGNUP_PER_IP = "10/h"
RESET_PER_IP = "5/h"
RESET_PER_ADDRESS = "5/h"
# Secrets: API keys created or rotated, personal access tokens created (per person, per address).
KEY_CREATION = (("user", "30/h"), ("ip", "60/h"))
KEY_ROTATION = (("user", "30/h"), ("ip", "60/h"))
TOKEN_CREATION = (("user", "20/h"), ("ip", "60/h"))
# Prompt playground runs: each is a real model call the team pays for (per person, per address).
PLAYGROUND_RUNS = (("user", "30/h"), ("ip", "60/h"))
# ... and per team owning the prompt API, whoever runs it: the person limit times the team's
# owners and admins would not bound what a team spends on the platform's provider keys.
PLAYGROUND_RUNS_PER_TEAM = "60/h"
# Invitation e-mails: per inviting person (whichever team) and per team (whoever invites).
INVITATIONS_PER_PERSON = "20/h"
INVITATIONS_PER_TEAM = "50/d"


def normalized_name(value: str) -> str:
    """NFKC, case-folded and stripped: the one spelling of a typed user name or address.
    (NFKC again after case folding, which can leave a string unnormalised.)"""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold()).strip()


def login_username(group: str, request: HttpRequest) -> str:
    """django-ratelimit key: the log-in form's user name, normalised."""
    return normalized_name(request.POST.get("username", ""))


def reset_address(group: str, request: HttpRequest) -> str:
    """django-ratelimit key: the password-reset form's address, normalised."""
    return normalized_name(request.POST.get("email", ""))


View = Callable[..., HttpResponse]


def limited(rates: tuple[tuple[str, str], ...], *, method: object = ALL) -> Callable[[View], View]:
    """A view decorator applying ``rates``, (key, rate) pairs such as KEY_CREATION, each on its
    own counter; over any of them the view is not run and the answer is a 429."""

    def decorate(view: View) -> View:
        for key, rate in reversed(rates):
            view = ratelimit(key=key, rate=rate, method=method, block=True)(view)
        return view

    return decorate


@dataclass(frozen=True)
class Limit:
    """One counter: ``rate`` ("20/h") of ``group`` per value of ``key``."""

    group: str
    key: str | Callable[[str, HttpRequest], str]
    rate: str

    def _usage(self, request: HttpRequest, *, increment: bool) -> dict[str, Any] | None:
        usage: dict[str, Any] | None = get_usage(
            request, group=self.group, key=self.key, rate=self.rate, method=ALL, increment=increment
        )
        return usage

    def reached(self, request: HttpRequest) -> bool:
        """Whether one more would go over the limit (counts nothing)."""
        usage = self._usage(request, increment=False)
        return usage is not None and usage["count"] >= usage["limit"]

    def count(self, request: HttpRequest) -> None:
        self._usage(request, increment=True)

    def take(self, request: HttpRequest) -> bool:
        """Count one and say whether it was within the limit, in one step (concurrent
        requests cannot all see room, as with ``reached`` then ``count``)."""
        usage = self._usage(request, increment=True)
        return usage is None or not usage["should_limit"]


def playground_team_limit(tenant_id: int) -> Limit:
    """The counter of playground runs of the prompt APIs of one team."""
    return Limit("playground.team", lambda group, request: str(tenant_id), PLAYGROUND_RUNS_PER_TEAM)


def invitation_limits(tenant_id: int) -> list[Limit]:
    """The counters an invitation goes through: the inviter's (by account), then the team's.
    Check them with ``reached`` before inviting and ``count`` only an invitation that was
    sent: attempts the service refuses (a viewer's, say) must not use up the team's share."""
    return [
        Limit("invitations.person", "user", INVITATIONS_PER_PERSON),
        Limit("invitations.team", lambda group, request: str(tenant_id), INVITATIONS_PER_TEAM),
    ]
