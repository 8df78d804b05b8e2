"""gunicorn settings for the portal (Procfile, compose, the image): `gunicorn -c portal/gunicorn.conf.py
portal.wsgi:application`. Command-line flags (--bind, --workers) override what is set here.

The access log goes to stdout with the token of invitation and password-reset links
redacted (``portal.logredact``): in the request line, the query, the Referer and any header.
"""

import os

from gunicorn.glogging import Logger

from portal.logredact import redact

accesslog = os.environ.get("PORTAL_ACCESS_LOG", "-")
bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("PORTAL_WORKERS", "2"))


class TokenRedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        return {
            name: redact(value) if isinstance(value, str) else value
            for name, value in super().atoms(resp, req, environ, request_time).items()
        }


logger_class = TokenRedactingLogger
