"""Load generation: wrk for throughput, and a paced generator for latency at a fixed rate."""

from __future__ import annotations

import asyncio
import gc
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import aiohttp

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def _ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    threads: int = 2,
    headers: dict | None = None,
    script: str | None = None,
    timeout: str | None = None,
) -> dict:
    """Closed-loop maximum throughput, with wrk's latency distribution. ``script``: a wrk Lua
    file (e.g. one from ``post_script``, for a POST with a body); ``timeout``: wrk's request
    timeout (default 2s), e.g. "10s" for a slow target whose answers would otherwise count
    as socket errors."""
    args = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    if script:
        args += ["-s", script]
    if timeout:
        args += ["--timeout", timeout]
    done = subprocess.run([*args, url], capture_output=True, text=True, check=True)
    if script and script in done.stderr:  # wrk reports a broken script and runs without it
        raise RuntimeError(f"wrk could not run {script}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def lua_string(text: str) -> str:
    """``text`` as a Lua string literal (long brackets cannot be closed from inside)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def post_script(path: Path, body: bytes, content_type: str = "application/json") -> str:
    """Write a wrk Lua script that POSTs ``body`` on every request; returns its path."""
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {lua_string(body.decode())}\n"
        f'wrk.headers["Content-Type"] = {lua_string(content_type)}\n'
    )
    return str(path)


def parse_wrk(out: str) -> dict:
    """The figures of wrk's --latency report."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": rps,
        "requests": int(total.group(1)) if total else 0,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def median_row(rows: list[dict]) -> dict:
    """One row for several wrk runs of a target: the median of each figure, errors summed."""
    return {
        "rps": statistics.median(r["rps"] for r in rows),
        "p50_ms": statistics.median(r["p50_ms"] for r in rows),
        "p99_ms": statistics.median(r["p99_ms"] for r in rows),
        "non_2xx": sum(r["non_2xx"] for r in rows),
        "socket_errors": "; ".join(r["socket_errors"] for r in rows if r["socket_errors"]),
    }


async def _paced(
    url: str, rate: int, seconds: float, headers: dict, connections: int, method: str = "GET", body: bytes | None = None
) -> list[float]:
    """Send at a fixed schedule; latency counts from the scheduled time, so a stall is not
    hidden by the generator waiting for it (no coordinated omission)."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(scheduled: float):
            nonlocal errors
            try:
                async with session.request(method, url, data=body) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append((time.perf_counter() - scheduled) * 1000)

        start = time.perf_counter() + 0.05
        tasks = []
        for i in range(int(rate * seconds)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    if errors:
        raise RuntimeError(f"{errors} requests failed during the fixed-rate run against {url}")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fixed_rate(
    url: str,
    *,
    rate: int,
    seconds: float,
    headers: dict | None = None,
    connections: int = 32,
    method: str = "GET",
    body: bytes | None = None,
) -> dict:
    """p50/p99 (ms) at a fixed request rate; a ``body`` is sent as is (set its content-type
    in ``headers``)."""
    # The generator's own full garbage collections stalled it for up to 300 ms at the same
    # points of every run, against nginx as much as against Portico: a stall of the tool,
    # not of the server, so the collector is off while it measures.
    gc.collect()
    gc.disable()
    try:
        latencies = asyncio.run(_paced(url, rate, seconds, headers or {}, connections, method, body))
    finally:
        gc.enable()
    return {"p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99), "n": len(latencies)}
