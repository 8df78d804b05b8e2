"""Invitation and password-reset links work like passwords until used: the portal's access
log (the Procfile's gunicorn command, as `make run` starts it) and Django's own log lines
show their paths with the token replaced by [redacted]."""

import io
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from portal.embedded_redis import free_port
from portal.logredact import RedactTokens, redact

ROOT = Path(__file__).resolve().parents[2]
INVITATION = "Inv1tat10nT0ken_-secret"
RESET = "c4k2xy-5ec4e7reset0token"


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} line in the Procfile")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, **headers: str) -> int:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def portal_server(tmp_path):
    """The Procfile's portal command on a free port, its output (access log included) in a file."""
    port = free_port()
    command = procfile_command("portal").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    command = command.replace("--workers 2", "--workers 1")
    env = {name: value for name, value in os.environ.items() if name not in ("SECRET_KEY", "DEBUG")}
    env.update(PORTICO_VAR_DIR=str(tmp_path), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    log = tmp_path / "portal.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            ["sh", "-c", command],  # as honcho runs a Procfile line
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the shell and gunicorn stop together
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while fetch_or_none(base + "/healthz") != 200:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield base, log
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def fetch_or_none(url: str) -> int | None:
    try:
        return fetch(url)
    except OSError:
        return None


def test_the_access_log_shows_link_paths_without_their_tokens(portal_server):
    base, log = portal_server
    invitation_path = f"/invitations/{INVITATION}/"
    assert fetch(base + invitation_path) == 302  # to the log-in page, with ?next= holding the link
    fetch(f"{base}/accounts/login/?next={invitation_path}", Referer=base + invitation_path)
    fetch(f"{base}/accounts/login/?next=%2Finvitations%2F{INVITATION}%2F")
    fetch(f"{base}/accounts/reset/MQ/{RESET}/")  # a reset link (this database has no tables: a 500)
    fetch(f"{base}/accounts/reset/zz/{RESET}/", Referer=f"{base}/accounts/reset/MQ/{RESET}/")
    time.sleep(0.5)  # the access log line is written after the answer
    written = log.read_text()
    assert INVITATION not in written and RESET not in written, written
    assert 'GET /invitations/[redacted]/ HTTP/1.1" 302' in written
    assert "GET /accounts/login/?next=/invitations/[redacted]/" in written
    assert "next=%2Finvitations%2F[redacted]%2F" in written
    assert "GET /accounts/reset/MQ/[redacted]/" in written
    assert f'"{base}/invitations/[redacted]/"' in written  # the Referer


def test_django_log_lines_are_redacted_by_the_configured_handler():
    handlers = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactTokens) for f in h.filters)]
    assert handlers, "settings.LOGGING's console handler carries the RedactTokens filter"
    handler = handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        logging.getLogger("django.request").warning("Not Found: %s", f"/invitations/{INVITATION}/")
        logging.getLogger("django.request").error("Internal Server Error: /accounts/reset/MQ/%s/", RESET)
    finally:
        handler.setStream(previous)
    written = stream.getvalue()
    assert INVITATION not in written and RESET not in written
    assert "Not Found: /invitations/[redacted]/" in written
    assert "Internal Server Error: /accounts/reset/MQ/[redacted]/" in written


@pytest.mark.parametrize(
    "text,expected",
    [
        ("GET /accounts/reset/MQ/set-password/ HTTP/1.1", "GET /accounts/reset/MQ/set-password/ HTTP/1.1"),
        ("GET /accounts/reset/done/ HTTP/1.1", "GET /accounts/reset/done/ HTTP/1.1"),
        ("GET /accounts/password-reset/ HTTP/1.1", "GET /accounts/password-reset/ HTTP/1.1"),
        ("POST /invitations/abc?x=1 HTTP/1.1", "POST /invitations/[redacted]?x=1 HTTP/1.1"),
        ("/apps/3/keys/", "/apps/3/keys/"),
    ],
)
def test_only_the_token_segment_goes(text, expected):
    assert redact(text) == expected
