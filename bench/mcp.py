"""What the MCP server costs next to a direct call, in the same run: ``python -m bench.mcp``.

One gateway worker with full policy (bench/servers.py: key auth, subscription, plan limits,
call log), the same upstream, one keep-alive connection, requests one after another, the
three kinds interleaved in rounds so load from elsewhere weighs on all of them alike:

- ``direct``: ``GET /bench/items/1`` with the key;
- ``tools/call``: the ``getItem`` tool with ``item_id: 1`` (the same request, made in-process);
- ``tools/list``: the application's tools (one page of 100, from a 100-operation document).

Figures are medians and p99 of the client's round trip, read as ratios to ``direct``. Only
loopback; bounded in count.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

from bench import servers

OPERATIONS = 100
DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Bench", "version": "1"},
    "paths": {
        "/items/{item_id}": {
            "get": {
                "operationId": "getItem",
                "summary": "Read an item",
                "parameters": [
                    {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "verbose", "in": "query", "schema": {"type": "boolean"}},
                ],
            }
        },
        **{
            f"/things{i}/{{id}}": {
                "post": {
                    "operationId": f"thing{i}",
                    "summary": f"Thing {i}",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                }
            }
            for i in range(OPERATIONS - 1)
        },
    },
}
SET_DOCUMENT = """
from portal.models import ApiVersion
from portal.services.config_signal import publish_config_change
ApiVersion.objects.filter(base_path="/bench").update(openapi=DOCUMENT)
publish_config_change("bench: an OpenAPI document")
"""


def timed(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None, headers: dict) -> float:
    started = time.perf_counter()
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    answer = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {answer[:200]!r}")
    return elapsed


def measure(url: str, secret: str, *, rounds: int, per_round: int) -> dict:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    auth = {"Authorization": f"Bearer {secret}"}
    mcp_headers = {
        **auth,
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    call = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "bench_v1_getItem", "arguments": {"item_id": "1"}},
        }
    )
    listing = orjson.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    kinds = {
        "direct": ("GET", "/bench/items/1", None, auth),
        "tools/call": ("POST", "/mcp", call, mcp_headers),
        "tools/list": ("POST", "/mcp", listing, mcp_headers),
    }
    for method, path, body, headers in kinds.values():  # warm-up
        for _ in range(200):
            timed(connection, method, path, body, headers)
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(rounds):
        for name, (method, path, body, headers) in kinds.items():
            samples[name] += [timed(connection, method, path, body, headers) for _ in range(per_round)]
    connection.close()
    figures = {}
    for name, values in samples.items():
        values.sort()
        figures[name] = {
            "p50_us": round(statistics.median(values) * 1e6, 1),
            "p99_us": round(values[int(len(values) * 0.99) - 1] * 1e6, 1),
            "n": len(values),
        }
    direct = figures["direct"]
    for name in ("tools/call", "tools/list"):
        figures[name]["p50_over_direct"] = round(figures[name]["p50_us"] / direct["p50_us"], 2)
        figures[name]["p99_over_direct"] = round(figures[name]["p99_us"] / direct["p99_us"], 2)
    return figures


def wait_for_tools(url: str, secret: str, timeout: float = 20.0) -> None:
    """Until the worker serves the document's tools (a config reload after the update)."""
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json", "Accept": "application/json"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.post(f"{url}/mcp", data=body, headers=headers, timeout=5).json()
        if len(answer.get("result", {}).get("tools", [])) == OPERATIONS:
            return
        time.sleep(0.2)
    raise RuntimeError("the gateway did not list the document's tools")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=400)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="portico-bench-mcp-"))
    try:
        upstream, upstream_url = servers.start_upstream(workdir)
        processes, url, secret = servers.start_portico(workdir, upstream_url, workers=1)
        env = servers.portico_env(workdir, int(processes[1].args[processes[1].args.index("--port") + 1]))
        subprocess.run(
            [sys.executable, str(servers.ROOT / "manage.py"), "shell", "-c", f"DOCUMENT={DOCUMENT!r}\n" + SET_DOCUMENT],
            env=env,
            cwd=servers.ROOT,
            check=True,
        )
        wait_for_tools(url, secret)
        figures = measure(url, secret, rounds=args.rounds, per_round=args.per_round)
        print(json.dumps({"workers": 1, "operations_listed": OPERATIONS, "figures": figures}, indent=2))
    finally:
        servers.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
