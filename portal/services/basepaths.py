"""Which base paths a team may take.

The gateway routes a request to the longest base path that is a segment prefix of its
path (``gateway.routing.RouteTable``). A base path of one team that extends another team's
(``/weather/v1/forecast`` under ``/weather/v1``) would therefore take the calls the other
team's clients make there, and one that encloses it would catch the requests that miss
it. So a base path may neither extend nor enclose a base path of another team's API;
inside one team, nesting is the team's own business.
"""

from __future__ import annotations

from django.db.models import Q

from portal.models import ApiVersion
from portal.services.errors import InvalidInput

OVERLAP_MESSAGE = (
    "That base path is inside, or encloses, the base path of another team's API; the gateway would "
    "route some of one API's calls to the other. Choose another."
)


def enclosing_paths(base_path: str) -> list[str]:
    """``/a/b/c`` → ``["/a", "/a/b", "/a/b/c"]``: the paths a request to it could also match."""
    segments = base_path.split("/")
    return ["/".join(segments[: n + 1]) for n in range(1, len(segments))]


def refuse_overlap_with_other_teams(base_path: str | None, *, owner_id: int, version_id: int | None = None) -> None:
    """Raise InvalidInput when ``base_path`` nests with a base path of another owner's API
    (every state: a retired version is still routed, to answer 410)."""
    if not base_path:
        return
    others = ApiVersion.objects.exclude(api__owner_id=owner_id).filter(
        Q(base_path__in=enclosing_paths(base_path)) | Q(base_path__startswith=base_path + "/")
    )
    if version_id is not None:
        others = others.exclude(pk=version_id)
    if others.exists():
        raise InvalidInput(OVERLAP_MESSAGE)
