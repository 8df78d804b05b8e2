"""Benchmark the chat-completion path: the mock LLM provider directly, through Portico, and
through the LiteLLM proxy on the same mock.

``python -m bench.llm`` on its own, or as the second part of ``make bench`` /
``python -m bench.run`` (``--no-llm`` leaves it out, ``--only-llm`` runs it alone). Only
loopback; every load loop is bounded in count and time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench import llm_servers, llm_streams, load

TARGET_OVER_LITELLM = 20.0  # Portico's requests/s over LiteLLM's, at least
TARGET_ADDED_P99_MS = 1.5  # at the fixed rate, over direct
TARGET_TTFB_ADDED_MS = 2.0  # streamed time to first byte, median, over direct
PROMPT = "Say hello to the benchmark."
LITELLM_WRK_TIMEOUT = "10s"  # its answers take longer than wrk's 2 s default under load


def chat_body(model: str, *, stream: bool = False) -> bytes:
    body: dict = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


# -- figures -----------------------------------------------------------------------------------


def ratios_by_round(rounds: dict, name: str, reference: str) -> list[float]:
    return [a["rps"] / b["rps"] for a, b in zip(rounds[name], rounds[reference], strict=True)]


def summarise(results: dict, *, rate: int) -> dict:
    """The figures the targets are judged on, from the raw results."""
    throughput, fixed, ttfb, streams = (
        results["throughput"],
        results["fixed_rate"],
        results["ttfb"],
        results["streams"],
    )
    summary: dict = {
        "portico_over_direct_rps": round(throughput["portico"]["rps"] / throughput["direct"]["rps"], 3),
        "portico_over_litellm_rps": None,
        "added_p50_ms_at_rate": round(fixed["portico"]["p50_ms"] - fixed["direct"]["p50_ms"], 3),
        "added_p99_ms_at_rate": round(fixed["portico"]["p99_ms"] - fixed["direct"]["p99_ms"], 3),
        "ttfb_added_p50_ms": round(ttfb["portico"]["p50_ms"] - ttfb["direct"]["p50_ms"], 3),
        "ttfb_added_p99_ms": round(ttfb["portico"]["p99_ms"] - ttfb["direct"]["p99_ms"], 3),
        "streams": {key: streams[key] for key in ("streams", "completed", "errored", "peak_open")},
        "rate": rate,
        "targets": {
            "portico_over_litellm_rps": TARGET_OVER_LITELLM,
            "added_p99_ms_at_rate": TARGET_ADDED_P99_MS,
            "ttfb_added_p50_ms": TARGET_TTFB_ADDED_MS,
            "streams_without_error": streams["streams"],
        },
    }
    if "litellm" in throughput:
        by_round = ratios_by_round(results["rounds"], "portico", "litellm")
        summary["portico_over_litellm_rps"] = {
            "median": round(statistics.median(by_round), 2),
            "by_round": [round(r, 2) for r in by_round],
        }
    summary["verdicts"] = verdicts(summary)
    return summary


def gateway_view(records: list[dict]) -> dict:
    """What the gateway itself recorded for the fixed-rate run's calls (its call log): its
    overhead (the call's time not spent waiting on the provider) and the call's whole
    latency, p50 and p99 in ms. Time before the gateway read the request (accept, the
    kernel's queues) is in neither."""
    overhead = [r["overhead_ms"] for r in records if isinstance(r.get("overhead_ms"), int | float)]
    latency = [r["latency_ms"] for r in records if isinstance(r.get("latency_ms"), int | float)]
    if not overhead or not latency:
        return {"n": 0}
    return {
        "n": len(overhead),
        "overhead_p50_ms": round(load.percentile(overhead, 0.50), 3),
        "overhead_p99_ms": round(load.percentile(overhead, 0.99), 3),
        "latency_p50_ms": round(load.percentile(latency, 0.50), 3),
        "latency_p99_ms": round(load.percentile(latency, 0.99), 3),
    }


def verdicts(summary: dict) -> dict:
    """PASS, FAIL or "not measured" for each of the four targets."""
    over_litellm = summary["portico_over_litellm_rps"]
    streams = summary["streams"]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    return {
        "portico_over_litellm_rps": "not measured"
        if over_litellm is None
        else verdict(over_litellm["median"] >= TARGET_OVER_LITELLM),
        "added_p99_ms_at_rate": verdict(summary["added_p99_ms_at_rate"] <= TARGET_ADDED_P99_MS),
        "ttfb_added_p50_ms": verdict(summary["ttfb_added_p50_ms"] <= TARGET_TTFB_ADDED_MS),
        "concurrent_streams": verdict(streams["errored"] == 0 and streams["completed"] == streams["streams"]),
    }


def report(results: dict, summary: dict, *, connections: int, rounds: int, seconds: int, rate_seconds: float) -> str:
    throughput, fixed, ttfb, streams = (
        results["throughput"],
        results["fixed_rate"],
        results["ttfb"],
        results["streams"],
    )
    litellm = results.get("litellm") or {}
    workers = results.get("gateway_workers", 2)
    lines = [
        f"chat completions (non-streamed POST), wrk, {connections} connections, {rounds} rounds of {seconds}s "
        f"per target (medians); gateway workers: {workers}"
        + (f"; LiteLLM {litellm['version']}, {litellm['workers']} workers" if litellm.get("version") else ""),
        f"{'target':<10}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}{'errors':>8}",
    ]
    for name, row in throughput.items():
        errors = "yes" if row.get("socket_errors") else "-"
        lines.append(
            f"{name:<10}{row['rps']:>12,.0f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}{row['non_2xx']:>10}{errors:>8}"
        )
    if "litellm" not in throughput:
        lines.append(f"{'litellm':<10}  not measured: {litellm.get('skipped', 'left out')}")
    failing = [name for name, row in throughput.items() if row["non_2xx"] or row.get("socket_errors")]
    if failing:
        lines.append(
            f"WARNING: {', '.join(failing)} answered errors or dropped connections: those rows measured errors"
        )
    lines += ["", f"fixed rate {summary['rate']} req/s for {rate_seconds:.0f}s (latency from the scheduled send time)"]
    for name, row in fixed.items():
        lines.append(f"{name:<10}{'p50':>6} {row['p50_ms']:>8.2f} ms{'p99':>6} {row['p99_ms']:>8.2f} ms")
    view = results.get("gateway_view") or {}
    if view.get("n"):
        lines.append(
            f"  Portico's own record of those {view['n']:,} calls: overhead p50 {view['overhead_p50_ms']:.2f} ms, "
            f"p99 {view['overhead_p99_ms']:.2f} ms; whole call p50 {view['latency_p50_ms']:.2f} ms, "
            f"p99 {view['latency_p99_ms']:.2f} ms"
        )
    lines += [
        "",
        f"streamed completions at {results.get('ttfb_rate', 0):.0f}/s, "
        "time from the send to the first byte of the body",
    ]
    for name, row in ttfb.items():
        lines.append(
            f"{name:<10}{'p50':>6} {row['p50_ms']:>8.2f} ms{'p99':>6} {row['p99_ms']:>8.2f} ms   "
            f"({row['n']} streams, at most {row.get('peak_in_flight', '?')} at once)"
        )
    lines += [
        "",
        f"{streams['streams']:,} concurrent streams through Portico: {streams['completed']:,} complete with [DONE], "
        f"{streams['errored']:,} errored, at most {streams['peak_open']:,} open at once, "
        f"{streams['seconds']:.1f}s in all (a stream: p50 {streams['stream_seconds_p50']}s)",
    ]
    if streams.get("error_kinds"):
        lines.append("  errors: " + ", ".join(f"{kind} x{n}" for kind, n in streams["error_kinds"].items()))
    lines.append("")
    result = summary["verdicts"]
    over = summary["portico_over_litellm_rps"]
    if over is None:
        lines.append(
            f"Portico / LiteLLM requests/s: not measured ({litellm.get('skipped', 'left out')})   "
            f"(target >= {TARGET_OVER_LITELLM:.0f}x: not measured)"
        )
    else:
        by_round = ", ".join(f"{r:.1f}" for r in over["by_round"])
        lines.append(
            f"Portico / LiteLLM requests/s: {over['median']:.1f}x, median of rounds {by_round}   "
            f"(target >= {TARGET_OVER_LITELLM:.0f}x: {result['portico_over_litellm_rps']})"
        )
    lines.append(f"Portico / direct requests/s: {summary['portico_over_direct_rps']:.2f}x   (no target)")
    lines.append(
        f"added latency at {summary['rate']} req/s: p50 {summary['added_p50_ms_at_rate']:+.2f} ms, "
        f"p99 {summary['added_p99_ms_at_rate']:+.2f} ms "
        f"(target p99 <= {TARGET_ADDED_P99_MS} ms: {result['added_p99_ms_at_rate']})"
    )
    lines.append(
        f"streamed time to first byte added: p50 {summary['ttfb_added_p50_ms']:+.2f} ms, "
        f"p99 {summary['ttfb_added_p99_ms']:+.2f} ms "
        f"(target p50 <= {TARGET_TTFB_ADDED_MS:.0f} ms: {result['ttfb_added_p50_ms']})"
    )
    lines.append(
        f"{streams['streams']:,} concurrent streams on {workers} gateway workers: {streams['errored']:,} errors "
        f"(target 0 errors, all complete: {result['concurrent_streams']})"
    )
    return "\n".join(lines)


# -- running -----------------------------------------------------------------------------------


def add_options(parser: argparse.ArgumentParser) -> None:
    """The LLM part's own options (``bench.run`` adds them to its parser too)."""
    group = parser.add_argument_group("chat-completion part")
    group.add_argument("--llm-workers", type=int, default=2, help="Portico's and LiteLLM's workers")
    group.add_argument("--ttfb-requests", type=int, default=600, help="streamed requests per target for TTFB")
    group.add_argument("--ttfb-rate", type=float, default=200.0, help="streamed requests/s of the TTFB run")
    group.add_argument("--streams", type=int, default=2000, help="concurrent streams through Portico")
    group.add_argument(
        "--stream-delay-ms", type=float, default=100.0, help="the paced mock's pause between stream events"
    )
    group.add_argument("--no-litellm", action="store_true", help="leave the LiteLLM comparison out")
    group.add_argument("--litellm-spec", default=llm_servers.LITELLM_SPEC, help="what pip installs")
    group.add_argument("--litellm-venv", default="var/bench/litellm-venv", help="made once, reused")
    group.add_argument("--litellm-install-timeout", type=float, default=600.0)
    group.add_argument("--litellm-start-timeout", type=float, default=180.0)
    group.add_argument("--llm-out", default="var/bench/llm-results.json")


def add_shared_options(parser: argparse.ArgumentParser) -> None:
    """The options ``bench.run`` already has, with the same meaning."""
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per target and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the targets taking turns (medians)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=1000, help="requests/s of the fixed-rate latency run")
    parser.add_argument("--rate-seconds", type=float, default=10.0)


def _litellm(options: argparse.Namespace) -> tuple[Path | None, str]:
    if options.no_litellm:
        return None, "left out (--no-litellm)"
    venv = Path(options.litellm_venv).resolve()  # LiteLLM runs in a directory of its own
    return llm_servers.ensure_litellm(
        venv, options.litellm_spec, options.litellm_install_timeout, venv.parent / "litellm-install.log"
    )


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def measure(options: argparse.Namespace, workdir: Path) -> dict:
    results: dict = {"gateway_workers": options.llm_workers, "load_before": os.getloadavg()}
    script, skipped = _litellm(options)
    litellm: dict = {"spec": options.litellm_spec}
    if script is None:
        litellm["skipped"] = skipped
        print(f"LiteLLM is left out: {skipped}", flush=True)
    results["litellm"] = litellm

    _mock, mock_url = llm_servers.start_mock(workdir, "mock")
    # Paced streams (they last a second or more), on a mock of their own with 2 workers.
    _paced, paced_url = llm_servers.start_mock(
        workdir, "mock-paced", workers=2, stream_delay_ms=options.stream_delay_ms
    )
    litellm_process = None
    if script is not None:  # its start is slow: it overlaps Portico's migrations
        litellm_process, litellm_url = llm_servers.start_litellm(workdir, script, mock_url, options.llm_workers)
    _processes, gateway_url, secret, redis_url = llm_servers.start_portico(
        workdir, mock_url, paced_url, options.llm_workers
    )

    chat_path = "/v1/chat/completions"
    targets = {
        "direct": (
            mock_url + "/openai/v1/chat/completions",
            {"Authorization": f"Bearer {llm_servers.PROVIDER_KEY}"},
            llm_servers.UPSTREAM_MODEL,
        ),
        "portico": (gateway_url + chat_path, {"Authorization": f"Bearer {secret}"}, llm_servers.CHAT_ALIAS),
    }
    for url, headers, model in targets.values():
        llm_servers.wait_for_post(url, chat_body(model), headers, timeout=30)
    if litellm_process is not None:
        headers = {"Authorization": f"Bearer {llm_servers.LITELLM_MASTER_KEY}"}
        try:
            answer = llm_servers.wait_for_post(
                litellm_url + chat_path,
                chat_body(llm_servers.CHAT_ALIAS),
                headers,
                timeout=options.litellm_start_timeout,
                process=litellm_process,
            )
            if "Mock openai answer" not in str(answer):
                raise RuntimeError(f"LiteLLM answered something other than the mock's answer: {str(answer)[:200]}")
        except RuntimeError as error:
            litellm["skipped"] = f"it did not answer: {error} (log: {_log_tail(workdir / 'litellm.log')})"
            print(f"LiteLLM is left out: {litellm['skipped']}", flush=True)
            llm_servers.stop_group(litellm_process)
            litellm_process = None
        else:
            targets["litellm"] = (litellm_url + chat_path, headers, llm_servers.CHAT_ALIAS)
            litellm.update(version=llm_servers.litellm_version(script), workers=options.llm_workers)

    scripts = {
        name: load.post_script(workdir / f"post-{name}.lua", chat_body(model))
        for name, (_url, _headers, model) in targets.items()
    }

    def run_wrk(name: str, seconds: int) -> dict:
        url, headers, _model = targets[name]
        return load.wrk(
            url,
            seconds=seconds,
            connections=options.connections,
            headers=headers,
            script=scripts[name],
            timeout=LITELLM_WRK_TIMEOUT if name == "litellm" else None,
        )

    print("throughput (wrk)...", flush=True)
    for name in targets:
        run_wrk(name, 3 if name == "litellm" else 2)  # warm-up (LiteLLM's first calls are slow)
    results["rounds"] = {name: [] for name in targets}
    for _round in range(options.rounds):
        for name in targets:
            results["rounds"][name].append(run_wrk(name, options.seconds))
            time.sleep(0.5)
    results["throughput"] = {name: load.median_row(rows) for name, rows in results["rounds"].items()}
    if litellm_process is not None:  # idle from here on; its workers need not share the box
        llm_servers.stop_group(litellm_process)

    print(f"fixed rate {options.rate} req/s...", flush=True)
    results["fixed_rate"] = {}
    for name in ("direct", "portico"):
        url, headers, model = targets[name]
        post = {"headers": {**headers, "Content-Type": "application/json"}, "method": "POST", "body": chat_body(model)}
        load.fixed_rate(url, rate=options.rate, seconds=2, **post)  # warm-up
        results["fixed_rate"][name] = load.fixed_rate(url, rate=options.rate, seconds=options.rate_seconds, **post)
    time.sleep(1.5)  # the workers flush their call records every second or so
    results["gateway_view"] = gateway_view(
        llm_servers.recent_call_records(redis_url, int(options.rate * options.rate_seconds))
    )

    print("streamed time to first byte...", flush=True)
    samples: dict[str, list[float]] = {"direct": [], "portico": []}
    peaks = {"direct": 0, "portico": 0}
    errors: dict[str, dict] = {}
    per_round = max(1, options.ttfb_requests // options.rounds)
    for run in range(options.rounds + 1):  # the first run is a warm-up
        for name in ("direct", "portico"):
            url, headers, model = targets[name]
            got = llm_streams.time_to_first_byte(
                url,
                headers={**headers, "Content-Type": "application/json"},
                body=chat_body(model, stream=True),
                count=per_round if run else 100,
                rate=options.ttfb_rate,
            )
            if got["errors"]:
                errors[name] = got["error_kinds"]
            if run:
                samples[name] += got["samples"]
                peaks[name] = max(peaks[name], got["peak_in_flight"])
    if errors:
        raise RuntimeError(f"streamed requests failed during the TTFB run: {errors}")
    results["ttfb"] = {name: llm_streams.ttfb_row(values, peaks[name]) for name, values in samples.items()}
    results["ttfb_rate"] = options.ttfb_rate

    print(f"{options.streams:,} concurrent streams...", flush=True)
    results["streams"] = llm_streams.concurrent_streams(
        gateway_url + chat_path,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        body=chat_body(llm_servers.STREAM_ALIAS, stream=True),
        count=options.streams,
    )
    results["load_after"] = os.getloadavg()
    return results


def run(options: argparse.Namespace) -> int:
    """The LLM part, with parsed options (``add_shared_options`` + ``add_options``)."""
    if not load.wrk_binary():
        print("The benchmark needs wrk: apt-get install wrk (make bench does it as root).")
        return 2
    # Inherited by every process started below: each gateway worker holds a client and an
    # upstream socket per stream.
    llm_streams.raise_open_file_limit(4 * options.streams + 4096)
    # Stopped from outside (a CI timeout, kill): still stop the servers on the way out.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="portico-bench-llm-"))
    try:
        results = measure(options, workdir)
    except BaseException:
        llm_servers.stop_all()
        print(f"The LLM benchmark failed; logs are kept in {workdir}", file=sys.stderr)
        raise
    llm_servers.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)

    results["summary"] = summarise(results, rate=options.rate)
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
    print(
        "load average (1, 5, 15 min): before "
        + " ".join(f"{x:.2f}" for x in results["load_before"])
        + ", after "
        + " ".join(f"{x:.2f}" for x in results["load_after"])
    )
    out = Path(options.llm_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shared_options(parser)
    add_options(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
