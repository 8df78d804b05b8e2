"""Start a real Redis server for the test session, before Django reads its settings.

Loaded with ``-p tests.plugins.redis_server`` so it runs ahead of pytest-django: settings
and every subprocess we start (gateway, workers) see the same REDIS_URL. The session also
gets its own PORTICO_VAR_DIR so spools and the SQLite test database never touch ``var/``.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from portal import embedded_redis

_state: dict = {}


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    var_dir = Path(tempfile.mkdtemp(prefix="portico-test-"))
    port = embedded_redis.free_port()
    _state["process"] = embedded_redis.start(port, var_dir / "redis")
    _state["var_dir"] = var_dir
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    os.environ["PORTICO_TEST_REDIS_PORT"] = str(port)
    os.environ["PORTICO_VAR_DIR"] = str(var_dir)
    os.environ["PORTICO_FAST_PASSWORD_HASHING"] = "1"
    return (yield)


def pytest_unconfigure(config):
    process = _state.pop("process", None)
    if process is not None:
        process.terminate()
        process.wait(timeout=10)
    if var_dir := _state.pop("var_dir", None):
        shutil.rmtree(var_dir, ignore_errors=True)
