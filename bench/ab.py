"""A/B of the gateway's code: ``python -m bench.ab NAME=DIR [NAME=DIR ...]``.

Starts one upstream, nginx-1w, this tree's gateway (``mine``) and one gateway per other
checkout ``DIR`` (each with its own database and Redis, seeded by that checkout's
``bench/servers.py`` SEED, run with that checkout's code), then lets wrk take turns on them
for ``--rounds`` rounds (every other round in reverse). It prints each gateway's requests/s
over nginx-1w and its workers' CPU time per request, and mine over each other one, each the
median of the per-round ratios. Two gateways in the same run, seconds apart, resolve a few
per cent that two separate ``bench.run`` runs on a shared box cannot.

A checkout for the comparison: ``git archive <commit> | tar -x -C /tmp/base``.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench import load, servers
from bench.run import cpu_seconds, worker_pids


def seed_of(root: Path) -> str:
    """The SEED script of the checkout at ``root`` (the portal's services change signatures)."""
    module = ast.parse((root / "bench/servers.py").read_text())
    for node in module.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SEED":
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise SystemExit(f"no SEED in {root}/bench/servers.py")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("others", nargs="+", help="NAME=DIR: another checkout's gateway")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args(argv)
    others = dict(other.split("=", 1) for other in options.others)
    workdir = Path(tempfile.mkdtemp(prefix="portico-ab-"))
    auth = "Authorization"
    try:
        _upstream, upstream_url = servers.start_upstream(workdir)
        _nginx, nginx_url = servers.start_reference_proxy(workdir, upstream_url, workers=1)
        targets: dict[str, tuple[str, dict, list[int]]] = {"nginx-1w": (nginx_url + "/bench/x", {}, [])}
        processes, url, secret = servers.start_portico(workdir / "mine", upstream_url, options.workers)
        targets["mine"] = (url + "/bench/x", {auth: f"Bearer {secret}"}, worker_pids(processes[0]))
        here = servers.ROOT, servers.SEED
        for name, directory in others.items():
            servers.ROOT = Path(directory).resolve()
            servers.SEED = seed_of(servers.ROOT)
            processes, url, secret = servers.start_portico(workdir / name, upstream_url, options.workers)
            targets[name] = (url + "/bench/x", {auth: f"Bearer {secret}"}, worker_pids(processes[0]))
        servers.ROOT, servers.SEED = here
        for url, headers, _pids in targets.values():
            load.wrk(url, seconds=2, connections=64, headers=headers)  # warm-up
        rows: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for number in range(options.rounds):
            for name, (url, headers, pids) in list(targets.items())[:: -1 if number % 2 else 1]:
                before = cpu_seconds(pids) if pids else 0.0
                row = load.wrk(url, seconds=options.seconds, connections=64, headers=headers)
                cpu = (cpu_seconds(pids) - before) * 1e6 / max(row["requests"], 1) if pids else 0.0
                rows[name].append((row["rps"], cpu))
                time.sleep(0.5)
            print(number, {name: (round(r[-1][0]), round(r[-1][1], 1)) for name, r in rows.items()}, flush=True)
    finally:
        servers.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    def listed(values: list[float], digits: int = 3) -> str:
        return ", ".join(f"{value:.{digits}f}" for value in values)

    median = statistics.median
    for name in [name for name in targets if name != "nginx-1w"]:
        ratios = [gateway[0] / nginx[0] for gateway, nginx in zip(rows[name], rows["nginx-1w"], strict=True)]
        cpu = [row[1] for row in rows[name]]
        print(
            f"{name}: {median(row[0] for row in rows[name]):,.0f} req/s, x nginx-1w {median(ratios):.3f} "
            f"(rounds {listed(ratios)}); CPU {median(cpu):.1f} us/request (rounds {listed(cpu, 1)})"
        )
    for name in others:
        cpu_ratio = [m[1] / o[1] for m, o in zip(rows["mine"], rows[name], strict=True)]
        rps_ratio = [m[0] / o[0] for m, o in zip(rows["mine"], rows[name], strict=True)]
        print(
            f"mine / {name}: CPU per request {median(cpu_ratio):.3f} (rounds {listed(cpu_ratio)}); "
            f"requests/s {median(rps_ratio):.3f} (rounds {listed(rps_ratio)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
