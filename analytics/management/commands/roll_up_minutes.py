from django.core.management.base import BaseCommand

from analytics.rollups import roll_up_minutes


class Command(BaseCommand):
    help = "Recompute the minute rollups whose sources changed since the last run (what beat runs)."

    def handle(self, *args, **options) -> None:
        done = roll_up_minutes()
        self.stdout.write(f"{done} minute buckets recomputed.")
