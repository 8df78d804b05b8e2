"""The processes a benchmark run needs: an nginx upstream, nginx reference proxies, and
Portico's gateway with full policy against a throwaway database and Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

from portal import embedded_redis

ROOT = Path(__file__).resolve().parent.parent

# Every process started here, from the moment it exists: one that never became ready is stopped too.
STARTED: list[subprocess.Popen] = []


def _started(process: subprocess.Popen) -> subprocess.Popen:
    STARTED.append(process)
    return process


NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 1000000;
  {body}
}}
"""

UPSTREAM_BODY = """
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{{"ok":true}}'; }}
  }}
"""

PROXY_BODY = """
  upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
"""


def wait_for(url: str, headers: dict | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, headers=headers, timeout=0.5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def start_nginx(workdir: Path, body: str, workers: int = 1) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, dir=workdir, body=body))
    return _started(subprocess.Popen([nginx_binary(), "-c", str(conf), "-p", str(workdir)], stderr=subprocess.DEVNULL))


def start_upstream(workdir: Path) -> tuple[subprocess.Popen, str]:
    """nginx answering a constant when it is installed, else the bare ASGI app under uvicorn."""
    if not nginx_binary():
        return start_asgi(workdir, "upstream", workers=1)
    port = embedded_redis.free_port()
    process = start_nginx(workdir / "upstream", UPSTREAM_BODY.format(port=port))
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/")
    return process, url


def start_asgi(workdir: Path, name: str, workers: int) -> tuple[subprocess.Popen, str]:
    """bench.upstream_app under gunicorn with the gateway's own worker class (uvloop, httptools)."""
    port = embedded_redis.free_port()
    process = _started(
        subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(workers)]
            + ["-k", "gateway.worker.GatewayWorker", "--keep-alive", "75", "bench.upstream_app:app"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / f"{name}.log", "wb"),  # noqa: SIM115 - lives as long as the process
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/")
    return process, url


def start_reference_proxy(workdir: Path, upstream_url: str, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """nginx proxying to the upstream through a keep-alive pool (64 idle connections per worker)."""
    port = embedded_redis.free_port()
    upstream_port = int(upstream_url.rsplit(":", 1)[1])
    process = start_nginx(
        workdir / f"proxy-{workers}w", PROXY_BODY.format(port=port, upstream_port=upstream_port), workers=workers
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/")
    return process, url


def portico_env(workdir: Path, redis_port: int) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "PORTICO_VAR_DIR": str(workdir / "var"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }


SEED = """
from django.contrib.auth import get_user_model
from portal.models import *
from portal.services import keys, lifecycle, subscriptions
staff = get_user_model().objects.create_user("bench-admin", is_staff=True, is_superuser=True)
dev = get_user_model().objects.create_user("bench-dev")
tenant = Tenant.objects.create(name="Bench", slug="bench")
Membership.objects.create(user=dev, tenant=tenant, role=Role.OWNER)
api = Api.objects.create(slug="bench", name="Bench", owner=tenant)
version = ApiVersion.objects.create(api=api, version="v1", base_path="/bench")
UpstreamTarget.objects.create(version=version, url=UPSTREAM)
lifecycle.publish_version(version, actor=staff)
# A limit that is evaluated on every request but never reached: full policy, no refusals
# (far from its limits, the subscription is counted in Redis in reserved blocks).
plan = Plan.objects.create(api=api, name="Bench", requests_per_second=10_000_000, daily_quota=1_000_000_000)
app = Application.objects.create(tenant=tenant, name="Bench client")
subscriptions.request_subscription(app, api, plan, actor=dev)
_key, secret = keys.create_api_key(app, actor=dev)
print(secret)
"""


def start_otlp_sink(workdir: Path) -> tuple[subprocess.Popen, str]:
    """bench.otlp_sink: an OTLP/HTTP collector stand-in; returns its traces URL."""
    port = embedded_redis.free_port()
    process = _started(
        subprocess.Popen(
            [sys.executable, "-m", "bench.otlp_sink", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "otlp-sink.log", "wb"),  # noqa: SIM115 - lives as long as the process
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/count")
    return process, url + "/v1/traces"


def start_portico(
    workdir: Path, upstream_url: str, workers: int, extra_env: dict | None = None
) -> tuple[list[subprocess.Popen], str, str]:
    """Portico with full policy, its own database and Redis under ``workdir``; ``extra_env``
    (e.g. tracing settings) on top of the usual environment."""
    workdir.mkdir(parents=True, exist_ok=True)
    redis_port = embedded_redis.free_port()
    redis_process = _started(embedded_redis.start(redis_port, workdir / "redis"))
    env = portico_env(workdir, redis_port)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    seeded = subprocess.run(
        [*manage, "shell", "-c", f"UPSTREAM={upstream_url!r}\n" + SEED],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    secret = seeded.stdout.strip().splitlines()[-1]
    port = embedded_redis.free_port()
    gateway = _started(
        subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gateway/gunicorn.conf.py", "gateway.app:app"],
            env={**env, "GATEWAY_BIND": f"127.0.0.1:{port}", "GATEWAY_WORKERS": str(workers), **(extra_env or {})},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "gateway.log", "wb"),  # noqa: SIM115 - lives as long as the process
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/bench/x", headers={"Authorization": f"Bearer {secret}"})
    return [gateway, redis_process], url, secret


def stop_all(processes: list[subprocess.Popen] | None = None) -> None:
    """Stop the given processes, or by default every one this module started."""
    processes = STARTED if processes is None else processes
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
