import logging
import signal
import time
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandParser
from django.db import InterfaceError, OperationalError, close_old_connections

from analytics.ingest import CLAIM_IDLE_MS, ingest_call_logs

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0


class Command(BaseCommand):
    help = (
        "Move call records from the gateway's Redis stream into the CallLog table (what beat runs). "
        "With --follow, keep doing so until SIGTERM or SIGINT (a dedicated ingest process)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--follow", action="store_true", help="keep reading the stream until stopped")
        parser.add_argument("--max-seconds", type=float, default=None, help="stop reading after this long")
        parser.add_argument("--batch-size", type=int, default=None, help="stream entries per read and transaction")
        parser.add_argument(
            "--claim-idle-ms",
            type=int,
            default=CLAIM_IDLE_MS,
            help="take over entries another consumer left unacknowledged this long",
        )
        parser.add_argument("--database", default="default", help="the database alias to store into")

    def handle(self, *args: Any, **options: Any) -> None:
        kwargs = {
            "batch_size": options["batch_size"],
            "claim_idle_ms": options["claim_idle_ms"],
            "using": options["database"],
        }
        if not options["follow"]:
            stored = ingest_call_logs(max_seconds=options["max_seconds"], **kwargs)
            self.stdout.write(f"{stored} call records ingested.")
            return
        # A stop request ends the loop between batches; a kill at any point loses nothing
        # either (the entries stay pending and are claimed again), it only delays them.
        stopping: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda number, _frame: stopping.append(number))
        deadline = None if options["max_seconds"] is None else time.monotonic() + options["max_seconds"]
        stored = 0
        while not stopping and (deadline is None or time.monotonic() < deadline):
            try:
                stored += ingest_call_logs(max_batches=10, block_ms=1000, **kwargs)
            except (redis.RedisError, OSError, OperationalError, InterfaceError) as error:
                # Redis or the database away: what was read stays pending; try again shortly.
                log.warning("ingest paused (%s); retrying in %.0f s", error, RETRY_SECONDS)
                close_old_connections()
                time.sleep(RETRY_SECONDS)
        self.stdout.write(f"{stored} call records ingested.")
