"""The real ingest in a process that kills itself (SIGKILL, no cleanup) at a chosen point of
its Nth batch, for the crash tests: ``after-read`` (entries read and pending, nothing
stored) or ``before-ack`` (rows committed, entries not yet acknowledged).

    DATABASE_URL=... PORTICO_CALL_LOG_STREAM=... python -m tests.analytics.crashing_ingest after-read 3 2

(die at the 3rd batch, reading 2 entries at a time). Nothing in the ingest is replaced: the
process only dies where a real crash could happen.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import django
import redis

WHERE, AT_BATCH, ENTRIES = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
_reads = 0


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DyingRedis(redis.Redis):
    def xreadgroup(self, *args: Any, **kwargs: Any) -> Any:
        global _reads
        answer = super().xreadgroup(*args, **kwargs)
        if answer and answer[0][1]:
            _reads += 1
            if WHERE == "after-read" and _reads == AT_BATCH:
                die()
        return answer

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = super().pipeline(*args, **kwargs)
        if WHERE == "before-ack" and _reads == AT_BATCH:
            pipe.execute = lambda *a, **k: die()  # the acknowledgement never leaves
        return pipe


if __name__ == "__main__":
    django.setup()
    from django.conf import settings

    from analytics.ingest import ingest_call_logs

    stored = ingest_call_logs(client=DyingRedis.from_url(settings.REDIS_URL), batch_size=ENTRIES)
    print(f"finished without dying: {stored}")
