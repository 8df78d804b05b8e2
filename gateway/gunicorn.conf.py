"""Serving knobs for the gateway: ``gunicorn -c gateway/gunicorn.conf.py gateway.app:app``."""

import multiprocessing
import os

bind = os.environ.get("GATEWAY_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GATEWAY_WORKERS", multiprocessing.cpu_count()))
worker_class = "uvicorn.workers.UvicornWorker"
keepalive = 75
graceful_timeout = int(os.environ.get("GATEWAY_GRACEFUL_TIMEOUT", "30"))
timeout = 120
accesslog = None
