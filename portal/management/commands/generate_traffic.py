"""Send demo traffic through a running gateway (see portal/traffic.py):
``manage.py generate_traffic --duration 60 --rate 30 --gateway http://127.0.0.1:8080``."""

from __future__ import annotations

import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.services.errors import InvalidInput
from portal.traffic import Stats, TrafficGenerator, check_gateway, provision, wait_until_served

MAX_RATE = 500.0  # a demo, not a load test (bench/ is for those)
MAX_CONCURRENCY = 64


def _positive(kind: type, most: float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(text) from None
        if not 0 < value <= most:
            raise ValueError(text)
        return value

    parse.__name__ = f"a number from 0 to {most:g}"
    return parse


class Command(BaseCommand):
    help = (
        "Send realistic mixed traffic (REST, 4xx, 429, upstream errors, AI calls on the mock provider) "
        "through a running gateway, with keys of its own. Ctrl-C stops it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--gateway", default="http://127.0.0.1:8080", help="the gateway's base URL")
        parser.add_argument(
            "--duration", type=_positive(float, 7 * 86400), default=None, help="seconds (default: until Ctrl-C)"
        )
        parser.add_argument("--rate", type=_positive(float, MAX_RATE), default=20.0, help="calls per second (mean)")
        parser.add_argument(
            "--concurrency", type=_positive(int, MAX_CONCURRENCY), default=8, help="calls in flight at most"
        )
        parser.add_argument("--seed", type=int, default=None, help="for a repeatable mix")

    def handle(self, *args: Any, **options: Any) -> None:
        gateway: str = options["gateway"]
        if not gateway.startswith(("http://", "https://")):
            raise CommandError("--gateway is a URL such as http://127.0.0.1:8080.")
        try:
            check_gateway(gateway, settings.PORTICO_GATEWAY_URL)
            provisioned = provision()
            wait_until_served(gateway, provisioned)
            generator = TrafficGenerator(
                gateway,
                provisioned,
                rate=options["rate"],
                concurrency=options["concurrency"],
                seed=options["seed"],
            )
        except InvalidInput as error:
            raise CommandError(error.message) from None
        apps = ", ".join(caller.application for caller in provisioned.callers)
        until = f"for {options['duration']:g} s" if options["duration"] else "until Ctrl-C"
        self.stdout.write(f"Sending ~{options['rate']:g} calls/s to {gateway} {until} as {apps}.")

        # SIGTERM (honcho, docker) stops it like Ctrl-C: in-flight calls finish, then the summary.
        def stop(signum: int, frame: Any) -> None:
            generator.stop.set()

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            stats = generator.run(options["duration"], on_tick=self._progress)
        except KeyboardInterrupt:
            generator.stop.set()
            stats = generator.stats
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write(self.style.SUCCESS(f"Done: {self._summary(stats)}"))
        self.stdout.write("  by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.kinds.items())))

    def _progress(self, stats: Stats) -> None:
        self.stdout.write(f"  {self._summary(stats)}")

    @staticmethod
    def _summary(stats: Stats) -> str:
        classes = ", ".join(f"{name} {count}" for name, count in stats.classes().items())
        return f"{stats.sent} sent ({classes}); {stats.failed} without an answer, {stats.skipped} skipped"
