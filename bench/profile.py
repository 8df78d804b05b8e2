"""Where a gateway worker spends its time under load: ``python -m bench.profile``.

Starts the same stack as the benchmark, drives Portico with wrk, samples every gateway worker
with py-spy (``pip install py-spy``; not a project dependency) and prints the functions with the
most samples, by own time and by time including callees. The collapsed stacks stay in
var/bench/ for a flame graph (e.g. speedscope.app or flamegraph.pl).
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import load, servers


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def record(pid: int, seconds: int, out: Path, native: bool) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.unlink(missing_ok=True)  # a failed sampling must not leave an older run's stacks to be read
    subprocess.run(
        [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
        + ["--format", "raw", "--output", str(out), "--nonblocking"]
        + (["--native"] if native else []),
        check=False,
        capture_output=True,
    )


def summarise(stacks: list[Path], top: int) -> str:
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for path in stacks:
        if not path.exists():
            lines_missing = f"py-spy wrote no samples to {path} (is ptrace allowed? try --native off)"
            raise RuntimeError(lines_missing)
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            # "function (path:line)" -> "function (path)": one row per function, whatever the line.
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            n = int(count)
            total += n
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    lines = [f"{total} samples"]
    for title, counter in (("own time", own), ("including callees", inclusive)):
        lines.append(f"\n-- top {top} by {title} --")
        for frame, n in counter.most_common(top):
            lines.append(f"{100 * n / total:6.1f}%  {frame}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--native", action="store_true", help="include C frames (uvloop, syscalls)")
    parser.add_argument("--out", default="var/bench")
    options = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="portico-profile-"))
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        _upstream, upstream_url = servers.start_upstream(workdir)
        gateway_processes, gateway_url, secret = servers.start_portico(workdir, upstream_url, options.workers)
        headers = {"Authorization": f"Bearer {secret}"}
        load.wrk(gateway_url + "/bench/x", seconds=2, connections=options.connections, headers=headers)
        pids = worker_pids(gateway_processes[0].pid)
        stacks = [out / f"profile-worker-{i}.txt" for i in range(len(pids))]
        samplers = [
            threading.Thread(target=record, args=(pid, options.seconds - 2, path, options.native))
            for pid, path in zip(pids, stacks, strict=True)
        ]
        for sampler in samplers:
            sampler.start()
        result = load.wrk(
            gateway_url + "/bench/x", seconds=options.seconds, connections=options.connections, headers=headers
        )
        for sampler in samplers:
            sampler.join()
    finally:
        servers.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"Portico under py-spy: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.2f} ms (sampling slows it)")
    print(summarise(stacks, options.top))
    print(f"collapsed stacks: {', '.join(map(str, stacks))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
