"""Keep the secret segment of invitation and password-reset links out of logs.

``/invitations/<token>/`` and ``/accounts/reset/<uidb64>/<token>/`` carry a token that
works as a password until it is used or expires; access logs (request line, Referer) and
Django's own warnings ("Not Found: /invitations/...") would otherwise keep it. The token is
replaced by ``[redacted]``, also inside a percent-encoded ``next=`` parameter.
"""

import logging
import re

REDACTED = "[redacted]"
_SLASH = r"(?:/|%2F)"
_SEGMENT = r"(?:(?!%2F)[^/?#&\s\"'])+"
_TOKEN_PATHS = re.compile(
    rf"(?P<head>{_SLASH}invitations{_SLASH}"
    rf"|{_SLASH}accounts{_SLASH}reset{_SLASH}{_SEGMENT}{_SLASH}(?!set-password(?:/|%2F|$)))"
    rf"{_SEGMENT}",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the token of every invitation or reset link in it replaced."""
    return _TOKEN_PATHS.sub(lambda match: match.group("head") + REDACTED, text)


class RedactTokens(logging.Filter):
    """A logging filter (settings.LOGGING) that redacts tokens in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
