from django.core.management.base import BaseCommand

from analytics.rollups import roll_up_hours


class Command(BaseCommand):
    help = "Recompute the hour rollups whose sources changed since the last run (what beat runs)."

    def handle(self, *args, **options) -> None:
        done = roll_up_hours()
        self.stdout.write(f"{done} hour buckets recomputed.")
