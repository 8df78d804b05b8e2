"""Benchmark the gateway against direct calls and nginx proxies on the same upstream, then
the chat-completion path against the mock LLM provider and the LiteLLM proxy (bench.llm).

``make bench`` (or ``python -m bench.run``; ``--no-llm`` for the REST part alone,
``--only-llm`` for the LLM part alone). Everything runs on loopback, on this machine, in one
run, so the figures that matter are the ratios between rows, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import llm, load, servers

TARGET_RATIO = 0.30
TARGET_ADDED_P99_MS = 3.0


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
        "portico_over_bare_asgi_rps": round(portico_rps / throughput["bare-asgi"]["rps"], 3),
        "added_p50_ms_at_rate": round(fixed["portico"]["p50_ms"] - fixed["direct"]["p50_ms"], 3),
        "added_p99_ms_at_rate": round(fixed["portico"]["p99_ms"] - fixed["direct"]["p99_ms"], 3),
        "rate": rate,
        "gateway_workers": gateway_workers,
        "targets": {"portico_over_nginx_rps": TARGET_RATIO, "added_p99_ms_at_rate": TARGET_ADDED_P99_MS},
    }


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
    lines += ["", f"fixed rate {summary['rate']} req/s for {rate_seconds:.0f}s (latency from the scheduled send time)"]
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
    lines.append(f"Portico / bare ASGI requests/s: {summary['portico_over_bare_asgi_rps']:.2f}x   (no target)")
    added_p50, added_p99 = summary["added_p50_ms_at_rate"], summary["added_p99_ms_at_rate"]
    verdict = "PASS" if added_p99 <= TARGET_ADDED_P99_MS else "FAIL"
    lines.append(
        f"added latency at {summary['rate']} req/s: p50 {added_p50:+.2f} ms, p99 {added_p99:+.2f} ms "
        f"(target p99 <= {TARGET_ADDED_P99_MS:.0f} ms: {verdict})"
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
    llm.add_options(parser)
    options = parser.parse_args(argv)
    if options.only_llm:
        return llm.run(options)
    status = rest(options)
    if status or options.no_llm:
        return status
    print("\n-- chat completions --", flush=True)
    return llm.run(options)


def rest(options: argparse.Namespace) -> int:
    """The REST part: direct, nginx references, bare ASGI and Portico on the same upstream."""
    if not load.wrk_binary():
        print("The benchmark needs wrk: apt-get install wrk nginx-light (make bench does it as root).")
        return 2
    if not servers.nginx_binary():
        print("nginx is missing: the upstream is a bare ASGI app and there are no nginx reference rows.")

    workdir = Path(tempfile.mkdtemp(prefix="portico-bench-"))
    try:
        _upstream, upstream_url = servers.start_upstream(workdir)
        targets = {"direct": (upstream_url + "/bench/x", {})}
        if servers.nginx_binary():
            # Same upstream, same keep-alive pool: one worker, and as many workers as the gateway.
            for workers in reference_workers(options.workers):
                _proxy, proxy_url = servers.start_reference_proxy(workdir, upstream_url, workers=workers)
                targets[reference_name(workers)] = (proxy_url + "/bench/x", {})
        # No proxying, no policy: what Python ASGI under the same workers serves at most here.
        _bare, bare_url = servers.start_asgi(workdir, "bare-asgi", workers=options.workers)
        targets["bare-asgi"] = (bare_url + "/bench/x", {})
        _gateway_processes, gateway_url, secret = servers.start_portico(workdir, upstream_url, options.workers)
        targets["portico"] = (gateway_url + "/bench/x", {"Authorization": f"Bearer {secret}"})

        results: dict = {"throughput": {}, "rounds": {name: [] for name in targets}, "fixed_rate": {}}
        for url, headers in targets.values():
            load.wrk(url, seconds=2, connections=options.connections, headers=headers)  # warm-up
        # The box's load drifts over a minute: the targets take turns, so each round compares
        # rows measured moments apart, and one unlucky stretch does not decide a row.
        for _round in range(options.rounds):
            for name, (url, headers) in targets.items():
                results["rounds"][name].append(
                    load.wrk(url, seconds=options.seconds, connections=options.connections, headers=headers)
                )
                time.sleep(0.5)
        results["throughput"] = {name: load.median_row(rows) for name, rows in results["rounds"].items()}
        for name in ("direct", "portico"):
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
