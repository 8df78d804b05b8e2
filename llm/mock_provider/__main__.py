"""``python -m llm.mock_provider --port 9100 [--host 127.0.0.1] [--workers N] [--no-check]
[--stream-delay-ms N]``

With ``--workers`` above 1, N processes each bind the port with SO_REUSEPORT and the
kernel spreads connections among them (for the benchmark; faults need one worker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from llm.mock_provider.app import MockProvider
from llm.mock_provider.httpserver import serve


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llm.mock_provider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-check", action="store_true", help="skip conformance checks (benchmarks)")
    parser.add_argument("--stream-delay-ms", type=float, default=0.0, help="pause between stream events")
    return parser.parse_args(argv)


async def run_worker(options: argparse.Namespace, ready_fd: int | None) -> None:
    handler = MockProvider(
        check=not options.no_check, stream_delay=options.stream_delay_ms / 1000, workers=options.workers
    )
    server = await serve(handler, options.host, options.port, reuse_port=options.workers > 1)
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def stopping() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping)
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    async with server:
        await stop


def start_loop(options: argparse.Namespace, ready_fd: int | None) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a gateway dependency
        asyncio.run(run_worker(options, ready_fd))
    else:
        uvloop.run(run_worker(options, ready_fd))


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    url = f"http://{options.host}:{options.port}"
    if options.workers <= 1:
        print(f"mock provider on {url} (1 worker, checks {'off' if options.no_check else 'on'})", flush=True)
        start_loop(options, None)
        return
    read_fd, write_fd = os.pipe()
    children: list[int] = []
    for _ in range(options.workers):
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            try:
                start_loop(options, write_fd)
            finally:
                os._exit(0)
        children.append(pid)
    os.close(write_fd)
    ready = 0
    while ready < options.workers:
        got = os.read(read_fd, options.workers)
        if not got:
            sys.exit("a mock provider worker failed to start")
        ready += len(got)
    print(
        f"mock provider on {url} ({options.workers} workers, checks {'off' if options.no_check else 'on'})", flush=True
    )

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue


if __name__ == "__main__":
    main()
