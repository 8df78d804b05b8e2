"""The gateway harness: real upstream servers and the real gateway under gunicorn.

Fixtures (module scope, so one gateway per test module):
- ``upstream_a``, ``upstream_b``: aiohttp upstreams (see upstream_app.py) as base URLs.
- ``gateway``: a running gateway (gunicorn, 2 uvicorn workers) on a free port, reading the
  pytest-django test database and the session's Redis. ``gateway.url``, ``gateway.get(...)``.
- ``configure``: creates a published API version with targets, a plan, an application with
  an approved subscription and a key, through the portal services, then waits until both
  gateway workers serve that configuration. Returns a ``Config`` with the key's secret.

Tests using these must be ``django_db(transaction=True)``: the gateway reads committed data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from portal.embedded_redis import free_port
from portal.models import Api, ApiVersion, Application, Membership, Plan, Role, Tenant, UpstreamTarget
from portal.services import keys, lifecycle, subscriptions
from portal.services.config_signal import current_config_version

ROOT = Path(__file__).resolve().parents[2]


def wait_for_http(url: str, timeout: float = 15.0, ok=(200,)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=0.5).status_code in ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


def start_upstream(name: str, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """An upstream_app server named ``name`` (it says so in its answers), on ``port`` or a free one."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.upstream_app", str(port), name], cwd=ROOT, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/count")
    return process, url


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def upstream_a():
    process, url = start_upstream("a")
    yield url
    stop(process)


@pytest.fixture(scope="module")
def upstream_b():
    process, url = start_upstream("b")
    yield url
    stop(process)


class GatewayProcess:
    def __init__(self, redis_url: str, var_dir: Path, extra_env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url
        self.var_dir = var_dir
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
            "REDIS_URL": self.redis_url,
            "PORTICO_VAR_DIR": str(self.var_dir),
            "GATEWAY_BIND": f"127.0.0.1:{self.port}",
            "GATEWAY_WORKERS": "2",
            "GATEWAY_GRACEFUL_TIMEOUT": "5",
            "PROMETHEUS_MULTIPROC_DIR": str(self.var_dir / "prometheus"),
            **self.extra_env,
        }
        self.log = open(self.var_dir / "gateway.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gateway/gunicorn.conf.py", "gateway.app:app"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_http(f"{self.url}/readyz", timeout=20)

    def stop(self) -> None:
        if self.process:
            stop(self.process)
        self.log.close()

    def request(self, method: str, path: str, key: str | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.url + path, headers=headers, **kwargs)

    def get(self, path: str, key: str | None = None, **kwargs) -> requests.Response:
        return self.request("GET", path, key, **kwargs)

    def wait_for_config(self, version: int | None = None, timeout: float = 5.0) -> None:
        """Until every worker serves config ``version`` (default: the current one in Redis)."""
        version = current_config_version() if version is None else version
        deadline = time.monotonic() + timeout
        fresh_pids: set[int] = set()
        while time.monotonic() < deadline:
            # A new connection each time, so the kernel spreads them over both workers.
            answer = requests.get(f"{self.url}/readyz", timeout=1).json()
            if answer["config_version"] >= version:
                fresh_pids.add(answer["pid"])
                if len(fresh_pids) >= 2:
                    return
            time.sleep(0.02)
        raise AssertionError(f"gateway workers did not load config version {version} within {timeout}s")


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    process = GatewayProcess(settings.REDIS_URL, tmp_path_factory.mktemp("gateway"))
    process.start()
    yield process
    process.stop()


@dataclass
class Config:
    api: Api
    version: ApiVersion
    plan: Plan
    application: Application
    key: str
    key_prefix: str
    owner: object
    base_path: str


_counter = {"n": 0}


def _unique(name: str) -> str:
    _counter["n"] += 1
    return f"{name}{_counter['n']}-{os.getpid()}"


@pytest.fixture
def configure(gateway):
    """Build a routable API through the services and wait until the gateway serves it."""

    def build(
        targets: list[str] | list[tuple[str, int]],
        *,
        plan: dict | None = None,
        subscribe: bool = True,
        load_balancing: str = "round_robin",
        **version_fields,
    ) -> Config:
        user_model = get_user_model()
        staff = user_model.objects.filter(username="gw-staff").first() or user_model.objects.create_user(
            "gw-staff", is_staff=True, is_superuser=True
        )
        slug = _unique("api")
        owner = user_model.objects.create_user(_unique("owner"))
        tenant = Tenant.objects.create(name=slug, slug=slug)
        Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
        api = Api.objects.create(slug=slug, name=slug, owner=tenant)
        version = ApiVersion.objects.create(
            api=api, version="v1", base_path=f"/{slug}", load_balancing=load_balancing, **version_fields
        )
        for target in targets:
            url, weight = target if isinstance(target, tuple) else (target, 100)
            UpstreamTarget.objects.create(version=version, url=url, weight=weight)
        lifecycle.publish_version(version, actor=staff)
        plan_obj = Plan.objects.create(api=api, name="Plan", **(plan or {}))
        application = Application.objects.create(tenant=tenant, name="App")
        if subscribe:
            subscriptions.request_subscription(application, api, plan_obj, actor=owner)
        key, secret = keys.create_api_key(application, actor=owner)
        gateway.wait_for_config()
        return Config(api, version, plan_obj, application, secret, key.prefix, owner, f"/{slug}")

    return build
