"""The processes of the chat-completion benchmark: the mock LLM provider, Portico's gateway
with an AI route on it, and the LiteLLM proxy (in a virtual environment of its own) on the
same mock."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from bench import servers
from portal import embedded_redis

ROOT = servers.ROOT
CHAT_ALIAS = "bench-chat"  # the route on the mock that answers at once
STREAM_ALIAS = "bench-stream"  # the route on the mock that paces its stream events
UPSTREAM_MODEL = "gpt-4o-mini"
PROVIDER_KEY = "sk-bench-000000000001"  # the mock accepts any key without "invalid" in it
LITELLM_MASTER_KEY = "sk-litellm-bench-0001"
# A version that installs from PyPI with its [proxy] extra here (the newest ones need a
# litellm-proxy distribution the index does not have) and that predates the compromised
# v1.107.0 release; overridable with --litellm-spec.
LITELLM_SPEC = "litellm[proxy]==1.106.12"


def wait_for_post(
    url: str, body: bytes, headers: dict, timeout: float, process: subprocess.Popen | None = None
) -> dict:
    """POST until a 200 with a JSON body comes back (which it returns); a process that exits
    meanwhile stops the wait."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode} before answering")
        try:
            answer = requests.post(url, data=body, headers={"content-type": "application/json", **headers}, timeout=5)
            if answer.status_code == 200:
                return answer.json()
            last = f"{answer.status_code} {answer.text[:200]}"
        except requests.RequestException as error:
            last = type(error).__name__
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s (last: {last})")


# -- the mock provider -------------------------------------------------------------------------


def start_mock(
    workdir: Path, name: str, *, workers: int = 1, stream_delay_ms: float = 0.0
) -> tuple[subprocess.Popen, str]:
    """``python -m llm.mock_provider`` without its conformance checks (the benchmark measures
    the gateways, not the mock's own validation)."""
    port = embedded_redis.free_port()
    args = [sys.executable, "-m", "llm.mock_provider", "--port", str(port), "--no-check", "--workers", str(workers)]
    if stream_delay_ms:
        args += ["--stream-delay-ms", str(stream_delay_ms)]
    process = servers._started(
        subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / f"{name}.log", "wb"),  # noqa: SIM115 - lives as long as the process
        )
    )
    url = f"http://127.0.0.1:{port}"
    servers.wait_for(url + "/_mock/health")
    return process, url


# -- Portico -----------------------------------------------------------------------------------

SEED = """
from decimal import Decimal
from django.contrib.auth import get_user_model
from llm import services as llm
from portal.models import *
from portal.models.catalog import ApiKind
from portal.services import keys, lifecycle, subscriptions
staff = get_user_model().objects.create_user("bench-admin", is_staff=True, is_superuser=True)
dev = get_user_model().objects.create_user("bench-dev")
tenant = Tenant.objects.create(name="Bench", slug="bench")
Membership.objects.create(user=dev, tenant=tenant, role=Role.OWNER)
api = Api.objects.create(slug="bench-llm", name="Bench LLM", owner=tenant, kind=ApiKind.AI)
version = ApiVersion.objects.create(api=api, version="v1", base_path=None)
lifecycle.publish_version(version, actor=staff)
for alias, base_url in ROUTES:
    provider = llm.create_provider(actor=staff, name=alias, kind="openai", base_url=base_url)
    llm.add_key(provider, actor=staff, secret=PROVIDER_KEY, label="bench")
    model = llm.create_model(
        actor=staff, provider=provider, upstream_name=UPSTREAM_MODEL,
        input_price=Decimal("0.15"), output_price=Decimal("0.60"), cached_input_price=Decimal("0.075"),
    )
    llm.create_route(actor=staff, alias=alias, api=api, targets=[llm.TargetSpec(model, 100)])
# Limits checked on every call but never reached (2,000 concurrent streams included).
plan = Plan.objects.create(api=api, name="Bench", requests_per_second=10_000_000, daily_quota=1_000_000_000)
app = Application.objects.create(tenant=tenant, name="Bench client")
subscriptions.request_subscription(app, api, plan, actor=dev)
_key, secret = keys.create_api_key(app, actor=dev)
print(secret)
"""


def start_portico(
    workdir: Path, chat_mock_url: str, stream_mock_url: str, workers: int
) -> tuple[list[subprocess.Popen], str, str, str]:
    """The gateway with its own Redis and SQLite, an AI API with two routes (``bench-chat`` on
    the immediate mock, ``bench-stream`` on the paced one), a plan whose limits are never
    reached, a subscribed application and its key. Returns (processes, url, key, Redis URL)."""
    redis_port = embedded_redis.free_port()
    redis_process = servers._started(embedded_redis.start(redis_port, workdir / "redis"))
    env = servers.portico_env(workdir, redis_port)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    routes = [(CHAT_ALIAS, chat_mock_url + "/openai/v1"), (STREAM_ALIAS, stream_mock_url + "/openai/v1")]
    preamble = f"ROUTES={routes!r}\nPROVIDER_KEY={PROVIDER_KEY!r}\nUPSTREAM_MODEL={UPSTREAM_MODEL!r}\n"
    seeded = subprocess.run(
        [*manage, "shell", "-c", preamble + SEED], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    secret = seeded.stdout.strip().splitlines()[-1]
    port = embedded_redis.free_port()
    gateway = servers._started(
        subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gateway/gunicorn.conf.py", "gateway.app:app"],
            env={**env, "GATEWAY_BIND": f"127.0.0.1:{port}", "GATEWAY_WORKERS": str(workers)},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "gateway.log", "wb"),  # noqa: SIM115 - lives as long as the process
        )
    )
    return [gateway, redis_process], f"http://127.0.0.1:{port}", secret, env["REDIS_URL"]


def recent_call_records(redis_url: str, count: int) -> list[dict]:
    """The gateway's last ``count`` call records (newest first), from its call-log stream."""
    import redis

    from gateway.calllog import records_of

    client = redis.Redis.from_url(redis_url)
    records: list[dict] = []
    last = "+"
    try:
        while len(records) < count:
            entries = client.xrevrange("portico:calls", max=last, count=100)
            if last != "+":
                entries = entries[1:]  # the bound itself was read already
            if not entries:
                break
            for entry_id, fields in entries:
                records += [r for r in reversed(records_of(fields)) if isinstance(r, dict)]
                last = entry_id
    finally:
        client.close()
    return records[:count]


# -- LiteLLM -----------------------------------------------------------------------------------


def litellm_python() -> str | None:
    """An interpreter to make LiteLLM's virtual environment with (3.10 or newer)."""
    return shutil.which("python3.11") or (sys.executable if sys.version_info >= (3, 10) else None)


def ensure_litellm(venv: Path, spec: str, timeout: float, log: Path) -> tuple[Path | None, str]:
    """LiteLLM's proxy in its own virtual environment, made once and reused while ``spec`` is
    the same. Returns (the venv's ``litellm`` script, "") or (None, why not)."""
    script = venv / "bin" / "litellm"
    marker = venv / ".portico-bench-spec"
    if script.exists() and marker.exists() and marker.read_text() == spec:
        return script, ""
    python = litellm_python()
    if python is None:
        return None, "no Python 3.10+ interpreter to make its virtual environment with"
    shutil.rmtree(venv, ignore_errors=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"installing {spec} into {venv} (once; up to {timeout:.0f}s, log in {log})", flush=True)
    started = time.monotonic()
    with open(log, "wb") as out:
        try:
            subprocess.run([python, "-m", "venv", str(venv)], stdout=out, stderr=out, check=True, timeout=60)
            remaining = max(10.0, timeout - (time.monotonic() - started))
            subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", spec],
                stdout=out,
                stderr=out,
                check=True,
                timeout=remaining,
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(venv, ignore_errors=True)
            return None, f"installing {spec} took more than {timeout:.0f}s (see {log})"
        except subprocess.CalledProcessError:
            errors = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
            shutil.rmtree(venv, ignore_errors=True)
            return None, f"pip could not install {spec}: {(errors or ['see ' + str(log)])[-1]}"
    if not script.exists():
        return None, f"{spec} installed no litellm script"
    marker.write_text(spec)
    print(f"installed in {time.monotonic() - started:.0f}s", flush=True)
    return script, ""


def litellm_version(script: Path) -> str:
    python = script.parent / "python"
    found = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or "unknown"


LITELLM_CONFIG = """\
model_list:
  - model_name: {alias}
    litellm_params:
      model: openai/{model}
      api_base: {api_base}
      api_key: {key}
litellm_settings:
  callbacks: []
  num_retries: 0
  request_timeout: 30
  telemetry: false
general_settings:
  master_key: {master_key}
"""


def start_litellm(workdir: Path, script: Path, mock_url: str, workers: int) -> tuple[subprocess.Popen, str]:
    """``litellm --config ... --num_workers N`` on the mock as an OpenAI upstream: no database
    (no DATABASE_URL), a master key, no callbacks or retries, logging at ERROR (which also
    turns uvicorn's access log off), the bundled model cost map (it would fetch one)."""
    home = workdir / "litellm"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.yaml"
    config.write_text(
        LITELLM_CONFIG.format(
            alias=CHAT_ALIAS,
            model=UPSTREAM_MODEL,
            api_base=mock_url + "/openai/v1",
            key=PROVIDER_KEY,
            master_key=LITELLM_MASTER_KEY,
        )
    )
    port = embedded_redis.free_port()
    # A clean environment: none of Portico's settings (DATABASE_URL above all), no .env
    # read from a working directory (PRODUCTION mode; cwd is its own directory).
    env = {
        "PATH": f"{script.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
    }
    process = _group(
        subprocess.Popen(
            [str(script), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
            + ["--num_workers", str(workers)],
            cwd=home,
            env=env,
            stdout=open(workdir / "litellm.log", "wb"),  # noqa: SIM115 - lives as long as the process
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its workers are stopped with it
        )
    )
    return process, f"http://127.0.0.1:{port}"


# Processes started in a session of their own (LiteLLM: a supervisor and spawned workers).
GROUPS: list[subprocess.Popen] = []


def _group(process: subprocess.Popen) -> subprocess.Popen:
    GROUPS.append(process)
    return process


def stop_all() -> None:
    """Every process started here or by bench.servers."""
    for process in GROUPS:
        stop_group(process)
    servers.stop_all()


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, and whatever it forked."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):  # spawned workers that outlived their parent
        os.killpg(process.pid, signal.SIGKILL)
