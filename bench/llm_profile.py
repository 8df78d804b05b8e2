"""Where a gateway worker spends its time on chat completions: ``python -m bench.llm_profile``.

Starts the mock provider and Portico as ``bench.llm`` does, sends non-streamed chat
completions at a fixed rate (not a saturating loop: the cost per call, not the queueing),
samples every gateway worker with py-spy, and prints the functions with the most samples as
microseconds of CPU per call (samples / sampling rate / calls), by own time and including
callees. The collapsed stacks stay in var/bench/llm-profile-worker-N.txt.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from bench import llm_servers, load
from bench.llm import chat_body
from bench.profile import record, worker_pids

SAMPLING_HZ = 250  # what bench.profile.record samples at


def per_call(stacks: list[Path], calls: int, top: int) -> str:
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for path in stacks:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            n = int(count)
            total += n
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n

    def us(n: int) -> float:
        return n / SAMPLING_HZ / calls * 1e6

    lines = [f"{total} samples, {calls:,} calls: {us(total):.0f} us of worker CPU per call in all"]
    for title, counter in (("own time", own), ("including callees", inclusive)):
        lines.append(f"\n-- top {top} by {title}, us per call --")
        for frame, n in counter.most_common(top):
            lines.append(f"{us(n):8.1f}  {frame}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stream", action="store_true", help="streamed completions instead")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--out", default="var/bench")
    options = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="portico-llm-profile-"))
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        _mock, mock_url = llm_servers.start_mock(workdir, "mock")
        processes, gateway_url, secret, _redis = llm_servers.start_portico(workdir, mock_url, mock_url, options.workers)
        url = gateway_url + "/v1/chat/completions"
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        body = chat_body(llm_servers.CHAT_ALIAS, stream=options.stream)
        llm_servers.wait_for_post(url, chat_body(llm_servers.CHAT_ALIAS), headers, timeout=30)
        load.fixed_rate(url, rate=options.rate, seconds=2, headers=headers, method="POST", body=body)  # warm-up
        pids = worker_pids(processes[0].pid)
        stacks = [out / f"llm-profile-worker-{i}.txt" for i in range(len(pids))]
        # Sampling covers the middle of the run: it starts after, and ends before, the load.
        sampled = options.seconds - 2
        samplers = [
            threading.Thread(target=record, args=(pid, int(sampled), path, False))
            for pid, path in zip(pids, stacks, strict=True)
        ]
        loader = threading.Thread(
            target=load.fixed_rate,
            kwargs={
                "url": url,
                "rate": options.rate,
                "seconds": options.seconds,
                "headers": headers,
                "method": "POST",
                "body": body,
            },
        )
        loader.start()
        threading.Event().wait(1.0)
        for sampler in samplers:
            sampler.start()
        for sampler in samplers:
            sampler.join()
        loader.join()
    finally:
        llm_servers.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)
    calls = int(options.rate * int(sampled))
    print(f"Portico, {'streamed' if options.stream else 'non-streamed'} chat completions at {options.rate}/s")
    print(per_call(stacks, calls, options.top))
    print(f"collapsed stacks: {', '.join(map(str, stacks))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
