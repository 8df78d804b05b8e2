"""Serving knobs for the gateway: ``gunicorn -c gateway/gunicorn.conf.py gateway.app:app``."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

bind = os.environ.get("GATEWAY_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GATEWAY_WORKERS", multiprocessing.cpu_count()))
worker_class = "gateway.worker.GatewayWorker"
keepalive = 75
# In-flight requests get this long to finish on reload or shutdown before workers are killed.
graceful_timeout = int(os.environ.get("GATEWAY_GRACEFUL_TIMEOUT", "30"))
timeout = 120
accesslog = None  # every call is in the call log already

# Workers write their metrics to files in one directory per run (the master's pid), so two
# gateways sharing a var dir never add up or wipe each other's counters.
_var = Path(os.environ.get("PORTICO_VAR_DIR", "var"))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_var / f"prometheus-gateway-{os.getpid()}"))


def on_starting(server: Arbiter) -> None:
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)


def on_exit(server: Arbiter) -> None:
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if metrics_dir.name == f"prometheus-gateway-{os.getpid()}":  # ours, not one given by the caller
        shutil.rmtree(metrics_dir, ignore_errors=True)


def child_exit(server: Arbiter, worker: Worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
