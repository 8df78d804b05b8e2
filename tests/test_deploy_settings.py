"""Deployment: no secret in the image, no server on a made-up SECRET_KEY, a private key file
for local runs, `check --deploy` clean in production settings, and mail that leaves.

Each check runs the real thing in a subprocess with its own environment and var/ directory:
the Dockerfile's collectstatic step, the compose file's portal command, manage.py."""

import json
import os
import re
import secrets
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from portal.embedded_redis import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
INHERITED_SECRETS = ("SECRET_KEY", "PORTICO_ENCRYPTION_KEY", "DEBUG", "PORTICO_HTTPS", "SECURE_PROXY_SSL_HEADER")


def clean_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The test session's environment without any key or mode a deployment would set."""
    env = {name: value for name, value in os.environ.items() if name not in INHERITED_SECRETS}
    env.update(PORTICO_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="portal.settings", **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def production_env(var_dir: Path) -> dict[str, str]:
    return clean_env(
        var_dir,
        SECRET_KEY=secrets.token_urlsafe(50),
        PORTICO_ENCRYPTION_KEY="A" * 43 + "=",
        ALLOWED_HOSTS="portal.example.com",
        PORTICO_PORTAL_URL="https://portal.example.com",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
    )


def print_setting(env: dict[str, str], expression: str) -> subprocess.CompletedProcess:
    code = (
        f"import os; os.umask(0); import django; django.setup(); from django.conf import settings; print({expression})"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


# --- the image ------------------------------------------------------------------------------


def collectstatic_step() -> tuple[dict[str, str], list[str]]:
    """The Dockerfile's RUN step that collects static files: its inline variables and command."""
    lines = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    instructions = re.split(r"\n(?=[A-Z]+ )", "\n".join(lines).replace("\\\n", " "))
    (run,) = [line for line in instructions if line.startswith("RUN ") and "collectstatic" in line]
    (command,) = [part for part in run.removeprefix("RUN ").split("&&") if "collectstatic" in part]
    words = shlex.split(command)
    variables = dict(word.split("=", 1) for word in words if re.fullmatch(r"[A-Z_]+=.*", word))
    return variables, [word for word in words if not re.fullmatch(r"[A-Z_]+=.*", word)]


def test_the_image_build_writes_no_key_into_a_layer(tmp_path):
    variables, command = collectstatic_step()
    assert command[:3] == ["python", "manage.py", "collectstatic"]
    var_dir = tmp_path / "var"
    env = clean_env(var_dir, STATIC_ROOT=str(tmp_path / "static"), **variables)
    result = subprocess.run(
        [sys.executable, *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert any((tmp_path / "static").rglob("swagger-ui-bundle.js"))  # the step did its work
    written = sorted(path.name for path in var_dir.rglob("*") if path.is_file())
    assert not {"secret_key", "encryption_key"} & set(written), written
    # Nor is a key baked in as the image's environment.
    assert not re.search(r"^\s*(ENV|ARG)\b.*\b(SECRET_KEY|PORTICO_ENCRYPTION_KEY)\b", DOCKERFILE, re.MULTILINE)


def test_the_portal_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path):
    command = COMPOSE["services"]["portal"]["command"]
    command = [*command[: command.index("--bind")], "--bind", f"127.0.0.1:{free_port()}", "--workers", "1"]
    server = subprocess.Popen(
        command, cwd=ROOT, env=clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = server.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.communicate()
        pytest.fail("the portal started without SECRET_KEY")
    assert server.returncode != 0
    assert "SECRET_KEY is not set" in output


@pytest.mark.parametrize("variables", [{"DEBUG": "1"}, {"SECRET_KEY": "s" * 20 + secrets.token_urlsafe(40)}])
def test_the_portal_starts_with_a_secret_key_or_in_debug(tmp_path, variables):
    code = "import portal.wsgi; print('ready')"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean_env(tmp_path, **variables), capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == "ready", result.stderr[-2000:]


# --- the local key file ----------------------------------------------------------------------


def test_a_local_run_keeps_its_generated_key_in_a_private_file(tmp_path):
    env = clean_env(tmp_path, DEBUG="1")
    first = print_setting(env, "settings.SECRET_KEY")  # under umask 0: the mode is set at creation
    assert first.returncode == 0, first.stderr[-2000:]
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first.stdout.strip() and len(first.stdout.strip()) >= 50
    assert print_setting(env, "settings.SECRET_KEY").stdout == first.stdout  # generated once
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".secret_key")] == []  # no leftovers


def test_the_key_is_never_written_through_a_planted_link(tmp_path):
    elsewhere = tmp_path / "readable-by-all"
    (tmp_path / "secret_key").symlink_to(elsewhere)
    result = print_setting(clean_env(tmp_path, DEBUG="1"), "settings.SECRET_KEY")
    assert result.returncode != 0 and "must be a regular file" in result.stderr
    assert not elsewhere.exists()


def test_processes_starting_together_share_one_complete_key(tmp_path):
    env = clean_env(tmp_path, DEBUG="1")
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    starting = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    keys = {process.communicate(timeout=120)[0].strip() for process in starting}
    assert keys == {(tmp_path / "secret_key").read_text().strip()} and len(keys.pop()) >= 50


# --- production settings ---------------------------------------------------------------------


def test_check_deploy_passes_in_the_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


PROXY_PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
settings.ALLOWED_HOSTS = ["portal.example.com"]
client = Client(HTTP_HOST="portal.example.com")
plain = client.get("/accounts/login/")
proxied = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
health = client.get("/healthz")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "proxied": proxied.status_code,
    "hsts": proxied.get("Strict-Transport-Security"),
    "csrf_cookie_secure": bool(proxied.cookies["csrftoken"]["secure"]),
    "session_cookie_secure": settings.SESSION_COOKIE_SECURE,
    "health": health.status_code,
}))
"""


def test_behind_the_proxy_plain_http_is_redirected_and_https_served_with_hsts(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROXY_PROBE],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["plain"] == [301, "https://portal.example.com/accounts/login/"]
    assert seen["proxied"] == 200
    assert seen["hsts"] == "max-age=31536000; includeSubDomains"
    assert seen["csrf_cookie_secure"] and seen["session_cookie_secure"]
    assert seen["health"] == 200  # load balancers probe over plain HTTP


def test_a_malformed_proxy_header_setting_is_refused_at_start(tmp_path):
    env = {**production_env(tmp_path), "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https"}
    result = print_setting(env, "settings.SECURE_PROXY_SSL_HEADER")
    assert result.returncode != 0 and "SECURE_PROXY_SSL_HEADER reads" in result.stderr


def test_local_runs_keep_plain_http(tmp_path):
    result = print_setting(
        clean_env(tmp_path, DEBUG="1"), "settings.SECURE_SSL_REDIRECT, settings.SESSION_COOKIE_SECURE"
    )
    assert result.stdout.split() == ["False", "False"]


# --- mail ---------------------------------------------------------------------------------------


def test_compose_sends_real_mail_by_default():
    for name in ("portal", "worker", "beat"):
        env = COMPOSE["services"][name]["environment"]
        default = re.fullmatch(r"\$\{EMAIL_BACKEND:-(.+)\}", env["EMAIL_BACKEND"]).group(1)
        assert default == "django.core.mail.backends.smtp.EmailBackend"
        assert env["EMAIL_HOST"].startswith("${EMAIL_HOST")
