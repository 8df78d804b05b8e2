"""Benchmark the gateway against direct calls and nginx proxies on the same upstream, then
the chat-completion path against the mock LLM provider and the LiteLLM proxy (bench.llm).

``make bench`` (or ``python -m bench.run``; ``--no-llm`` for the REST part alone,
``--only-llm`` for the LLM part alone, ``--only-tracing`` for Portico with and without span
export alone). Everything runs on loopback, on this machine, in one
run, so the figures that matter are the ratios between rows, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import llm, load, servers

TARGET_RATIO = 0.30
TARGET_ADDED_P99_MS = 3.0
TARGET_TRACING_RATIO = 0.95  # span export on at 1% sampling costs at most 5% of requests/s
TRACED = "portico-otlp"


def reference_name(workers: int) -> str:
    return f"nginx-{workers}w"


def reference_workers(gateway_workers: int) -> list[int]:
    """The nginx references: 1 worker (the one DESIGN.md measured against) and, when the gateway
    has more, as many workers as the gateway."""
    return sorted({1, gateway_workers})


def ratios_by_round(rounds: dict, name: str, reference: str) -> list[float]:
    """``name``'s requests/s over ``reference``'s in each round (the two measured seconds apart)."""
    return [a["rps"] / b["rps"] for a, b in zip(rounds[name], rounds[reference], strict=True)]


def summarise(results: dict, *, gateway_workers: int, rate: int) -> dict:
    throughput, fixed = results["throughput"], results["fixed_rate"]
    portico_rps = throughput["portico"]["rps"]
    versus_nginx = {}
    for workers in reference_workers(gateway_workers):
        name = reference_name(workers)
        if name in throughput:
            by_round = ratios_by_round(results["rounds"], "portico", name)
            versus_nginx[name] = {
                "workers": workers,
                "median": round(statistics.median(by_round), 3),
                "by_round": [round(r, 3) for r in by_round],
            }
    return {
        "portico_over_nginx_rps": versus_nginx,
        "portico_over_direct_rps": round(portico_rps / throughput["direct"]["rps"], 3),
        "portico_over_bare_asgi_rps": (
            round(portico_rps / throughput["bare-asgi"]["rps"], 3) if "bare-asgi" in throughput else None
        ),
        "added_p50_ms_at_rate": (
            round(fixed["portico"]["p50_ms"] - fixed["direct"]["p50_ms"], 3) if "portico" in fixed else None
        ),
        "added_p99_ms_at_rate": (
            round(fixed["portico"]["p99_ms"] - fixed["direct"]["p99_ms"], 3) if "portico" in fixed else None
        ),
        "tracing": tracing_summary(results),
        "rate": rate,
        "gateway_workers": gateway_workers,
        "targets": {
            "portico_over_nginx_rps": TARGET_RATIO,
            "added_p99_ms_at_rate": TARGET_ADDED_P99_MS,
            "otlp_over_portico_rps": TARGET_TRACING_RATIO,
        },
    }


def tracing_summary(results: dict) -> dict | None:
    """Portico exporting spans (1% sampled) over Portico not exporting, round by round: in
    requests/s, and in the workers' CPU time per request (steadier on a shared box, where
    throughput also measures the neighbours)."""
    rounds = results["rounds"]
    if TRACED not in rounds:
        return None
    by_round = ratios_by_round(rounds, TRACED, "portico")
    cpu = [
        a["cpu_us_per_request"] / b["cpu_us_per_request"]
        for a, b in zip(rounds[TRACED], rounds["portico"], strict=True)
    ]
    return {
        "sample_ratio": results["trace_sample_ratio"],
        "median": round(statistics.median(by_round), 3),
        "by_round": [round(r, 3) for r in by_round],
        "cpu_us_per_request": {
            name: round(statistics.median(r["cpu_us_per_request"] for r in rounds[name]), 1)
            for name in ("portico", TRACED)
        },
        "cpu_ratio_median": round(statistics.median(cpu), 3),
        "cpu_ratio_by_round": [round(r, 3) for r in cpu],
        "exported": results.get("otlp_sink"),
    }


def worker_pids(master: subprocess.Popen) -> list[int]:
    return [int(pid) for pid in subprocess.check_output(["pgrep", "-P", str(master.pid)]).split()]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (/proc/<pid>/stat, fields 14 and 15)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def report(results: dict, summary: dict, *, connections: int, rounds: int, seconds: int, rate_seconds: float) -> str:
    throughput, fixed = results["throughput"], results["fixed_rate"]
    references = list(summary["portico_over_nginx_rps"])
    workers = summary["gateway_workers"]
    lines = [
        f"wrk, {connections} connections, {rounds} rounds of {seconds}s per target (medians), "
        f"gateway workers: {workers}" + (", nginx-Nw: the nginx proxy with N workers" if references else ""),
        f"{'target':<10}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}"
        + "".join(f"{'x ' + name:>12}" for name in references or ["nginx"]),
    ]
    for name, row in throughput.items():
        versus = [f"{row['rps'] / throughput[ref]['rps']:.2f}" for ref in references] or ["-"]
        lines.append(
            f"{name:<10}{row['rps']:>12,.0f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}{row['non_2xx']:>10}"
            + "".join(f"{v:>12}" for v in versus)
        )
    if fixed:
        lines += [
            "",
            f"fixed rate {summary['rate']} req/s for {rate_seconds:.0f}s (latency from the scheduled send time)",
        ]
    for name, row in fixed.items():
        lines.append(f"{name:<10}{'p50':>6} {row['p50_ms']:>8.2f} ms{'p99':>6} {row['p99_ms']:>8.2f} ms")
    lines.append("")
    if not references:
        lines.append(f"Portico / nginx requests/s: no nginx reference   (target >= {TARGET_RATIO:.2f}x: not measured)")
    for name, ratio in summary["portico_over_nginx_rps"].items():
        verdict = "PASS" if ratio["median"] >= TARGET_RATIO else "FAIL"
        by_round = ", ".join(f"{r:.2f}" for r in ratio["by_round"])
        lines.append(
            f"Portico / {name} requests/s: {ratio['median']:.2f}x, median of rounds {by_round}   "
            f"(target >= {TARGET_RATIO:.2f}x: {verdict})"
        )
    if summary["portico_over_bare_asgi_rps"] is not None:
        lines.append(f"Portico / bare ASGI requests/s: {summary['portico_over_bare_asgi_rps']:.2f}x   (no target)")
    added_p50, added_p99 = summary["added_p50_ms_at_rate"], summary["added_p99_ms_at_rate"]
    if added_p99 is not None:
        verdict = "PASS" if added_p99 <= TARGET_ADDED_P99_MS else "FAIL"
        lines.append(
            f"added latency at {summary['rate']} req/s: p50 {added_p50:+.2f} ms, p99 {added_p99:+.2f} ms "
            f"(target p99 <= {TARGET_ADDED_P99_MS:.0f} ms: {verdict})"
        )
    tracing = summary["tracing"]
    if tracing is not None:
        verdict = "PASS" if tracing["median"] >= TARGET_TRACING_RATIO else "FAIL"
        by_round = ", ".join(f"{r:.3f}" for r in tracing["by_round"])
        exported = tracing["exported"] or {}
        lines.append(
            f"Portico with span export ({tracing['sample_ratio']:.0%} sampled) / without requests/s: "
            f"{tracing['median']:.3f}x, median of rounds {by_round}   "
            f"(target >= {TARGET_TRACING_RATIO:.2f}x: {verdict}); "
            f"the sink received {exported.get('spans', 0):,} spans in {exported.get('requests', 0):,} exports"
        )
        cpu = tracing["cpu_us_per_request"]
        by_round = ", ".join(f"{r:.3f}" for r in tracing["cpu_ratio_by_round"])
        equivalent = 1 / tracing["cpu_ratio_median"]
        verdict = "PASS" if equivalent >= TARGET_TRACING_RATIO else "FAIL"
        lines.append(
            f"gateway workers' CPU per request: {cpu['portico']:.1f} us without, {cpu[TRACED]:.1f} us with span "
            f"export: {tracing['cpu_ratio_median']:.3f}x, median of rounds {by_round}; as requests/s of a "
            f"CPU-bound worker: {equivalent:.3f}x (target >= {TARGET_TRACING_RATIO:.2f}x: {verdict})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per target and round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="throughput rounds, the targets taking turns (medians reported)"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=1000, help="requests/s of the fixed-rate latency run")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=multiprocessing.cpu_count(),
        help="gateway workers, and those of the second nginx reference",
    )
    parser.add_argument("--out", default="var/bench/results.json")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--no-llm", action="store_true", help="the REST part only")
    parts.add_argument("--only-llm", action="store_true", help="the chat-completion part only")
    parts.add_argument(
        "--only-tracing",
        action="store_true",
        help="Portico with and without span export only (throughput rounds, no nginx, no fixed rate)",
    )
    parser.add_argument(
        "--trace-ratio", type=float, default=0.01, help="GATEWAY_TRACE_SAMPLE_RATIO of the gateway exporting spans"
    )
    llm.add_options(parser)
    options = parser.parse_args(argv)
    if options.only_llm:
        return llm.run(options)
    status = rest(options)
    if status or options.no_llm or options.only_tracing:
        return status
    print("\n-- chat completions --", flush=True)
    return llm.run(options)


def rest(options: argparse.Namespace) -> int:
    """The REST part: direct, nginx references, bare ASGI, Portico and Portico exporting spans
    on the same upstream (``--only-tracing``: direct and the two Portico rows)."""
    only_tracing = options.only_tracing
    if not load.wrk_binary():
        print("The benchmark needs wrk: apt-get install wrk nginx-light (make bench does it as root).")
        return 2
    if not servers.nginx_binary():
        print("nginx is missing: the upstream is a bare ASGI app and there are no nginx reference rows.")

    workdir = Path(tempfile.mkdtemp(prefix="portico-bench-"))
    try:
        _upstream, upstream_url = servers.start_upstream(workdir)
        targets = {"direct": (upstream_url + "/bench/x", {})}
        if servers.nginx_binary() and not only_tracing:
            # Same upstream, same keep-alive pool: one worker, and as many workers as the gateway.
            for workers in reference_workers(options.workers):
                _proxy, proxy_url = servers.start_reference_proxy(workdir, upstream_url, workers=workers)
                targets[reference_name(workers)] = (proxy_url + "/bench/x", {})
        if not only_tracing:
            # No proxying, no policy: what Python ASGI under the same workers serves at most here.
            _bare, bare_url = servers.start_asgi(workdir, "bare-asgi", workers=options.workers)
            targets["bare-asgi"] = (bare_url + "/bench/x", {})
        gateway_processes, gateway_url, secret = servers.start_portico(workdir, upstream_url, options.workers)
        targets["portico"] = (gateway_url + "/bench/x", {"Authorization": f"Bearer {secret}"})
        # The same gateway (own database and Redis, same seed) exporting the spans of the
        # sampled share of its calls to a collector stand-in: what span export costs.
        _sink, sink_url = servers.start_otlp_sink(workdir)
        traced_env = {"GATEWAY_OTLP_ENDPOINT": sink_url, "GATEWAY_TRACE_SAMPLE_RATIO": str(options.trace_ratio)}
        traced, traced_url, traced_secret = servers.start_portico(
            workdir / "traced", upstream_url, options.workers, traced_env
        )
        workers = {"portico": worker_pids(gateway_processes[0]), TRACED: worker_pids(traced[0])}
        targets[TRACED] = (traced_url + "/bench/x", {"Authorization": f"Bearer {traced_secret}"})

        results: dict = {"throughput": {}, "rounds": {name: [] for name in targets}, "fixed_rate": {}}
        results["trace_sample_ratio"] = options.trace_ratio
        for url, headers in targets.values():
            load.wrk(url, seconds=2, connections=options.connections, headers=headers)  # warm-up
        # The box's load drifts over a minute: the targets take turns, so each round compares
        # rows measured moments apart, and one unlucky stretch does not decide a row.
        for number in range(options.rounds):
            # Every other round in reverse: no row always runs right after the same one.
            for name, (url, headers) in list(targets.items())[:: -1 if number % 2 else 1]:
                before = cpu_seconds(workers[name]) if name in workers else 0.0
                row = load.wrk(url, seconds=options.seconds, connections=options.connections, headers=headers)
                if name in workers:
                    row["cpu_us_per_request"] = (cpu_seconds(workers[name]) - before) * 1e6 / max(row["requests"], 1)
                results["rounds"][name].append(row)
                time.sleep(0.5)
        results["throughput"] = {name: load.median_row(rows) for name, rows in results["rounds"].items()}
        results["otlp_sink"] = requests.get(sink_url.removesuffix("/v1/traces") + "/count", timeout=5).json()
        for name in () if only_tracing else ("direct", "portico"):
            url, headers = targets[name]
            load.fixed_rate(url, rate=options.rate, seconds=2, headers=headers)  # warm-up
            results["fixed_rate"][name] = load.fixed_rate(
                url, rate=options.rate, seconds=options.rate_seconds, headers=headers
            )
    except BaseException:
        servers.stop_all()
        print(f"The benchmark failed; logs are kept in {workdir}", file=sys.stderr)
        raise
    servers.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)

    results["summary"] = summarise(results, gateway_workers=options.workers, rate=options.rate)
    print()
    print(
        report(
            results,
            results["summary"],
            connections=options.connections,
            rounds=options.rounds,
            seconds=options.seconds,
            rate_seconds=options.rate_seconds,
        )
    )
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
