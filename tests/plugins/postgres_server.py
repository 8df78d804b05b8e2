"""A throwaway PostgreSQL cluster for the tests (and the ingest benchmark), as Redis has one.

Debian's ``postgresql`` package (``make test`` installs it when it runs as root) provides the
binaries; this module never needs a PostgreSQL service to be running. ``start()`` initdb's a
cluster in a temporary directory, runs it on a free port of 127.0.0.1 and on a Unix socket in
that directory, and ``stop()`` removes it all. PostgreSQL refuses to run as root, so as root
the cluster belongs to the ``postgres`` user the package creates and every command runs
through ``runuser``.

Loaded with ``-p tests.plugins.postgres_server``. The cluster starts lazily: only a session
that collects a test needing it (``tests/analytics/conftest.py`` calls ``ensure_started``)
pays the second it takes, and it is stopped at the end of the session. Without the binaries,
``ensure_started`` returns None and ``unavailable_reason()`` says why, for a clear skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from portal.embedded_redis import free_port

SUPERUSER = "portico"
# Debian's package creates this system user; PostgreSQL does not run as root.
SERVICE_USER = "postgres"
# A test cluster trades durability for speed: nothing in it must survive a machine crash.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian's layout), or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


def unavailable_reason() -> str | None:
    if bin_dir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql; `make test` does it as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return f"running as root and there is no {SERVICE_USER!r} user to run PostgreSQL as"
    return None


@dataclass
class PostgresServer:
    directory: Path
    port: int
    bin: Path
    as_user: list[str]

    @property
    def socket_dir(self) -> Path:
        return self.directory

    def url(self, dbname: str = "postgres", *, socket: bool = False) -> str:
        """A DATABASE_URL for ``dbname``: over TCP on 127.0.0.1, or over the Unix socket."""
        if socket:
            return (
                f"postgres://{SUPERUSER}@%2F{str(self.socket_dir).lstrip('/').replace('/', '%2F')}:{self.port}/{dbname}"
            )
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def start(*, settings: dict[str, str] | None = None, directory: Path | None = None) -> PostgresServer:
    """initdb a cluster and start it; ``settings`` are postgresql.conf parameters (``-c``).
    Raises RuntimeError with PostgreSQL's log when it does not come up."""
    if reason := unavailable_reason():
        raise RuntimeError(reason)
    binaries = bin_dir()
    assert binaries is not None
    directory = directory or Path(tempfile.mkdtemp(prefix="portico-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVICE_USER)
        os.chown(directory, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", SERVICE_USER, "--"]
    data = directory / "data"
    server = PostgresServer(directory, free_port(), binaries, as_user)
    try:
        subprocess.run(
            [
                *as_user,
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",  # loopback and a socket in a private directory only
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
        )
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(server.port),
            "unix_socket_directories": str(directory),
            **(settings or {}),
        }
        flags = " ".join(f"-c {name}={value}" for name, value in options.items())
        subprocess.run(
            [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(directory / "server.log")]
            + ["-o", flags, "-w", "-t", "30", "start"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as error:
        log = (directory / "server.log").read_text(errors="replace") if (directory / "server.log").exists() else ""
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start: {error.stderr.decode(errors='replace')}\n{log}") from error
    return server


_state: dict[str, PostgresServer] = {}


def ensure_started() -> PostgresServer | None:
    """The session's cluster (started on first call), or None when PostgreSQL is not installed.
    Its server URL is also put in ``PORTICO_TEST_POSTGRES_URL`` for subprocesses."""
    if "server" not in _state:
        if unavailable_reason():
            return None
        _state["server"] = start(settings=FAST_SETTINGS)
        os.environ["PORTICO_TEST_POSTGRES_URL"] = _state["server"].url()
    return _state["server"]


def pytest_unconfigure(config) -> None:
    server = _state.pop("server", None)
    if server is not None:
        server.stop()
