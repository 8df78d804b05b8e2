from django.core.management.base import BaseCommand

from analytics.rollups import roll_up_days


class Command(BaseCommand):
    help = "Recompute the day rollups whose sources changed since the last run (what beat runs)."

    def handle(self, *args, **options) -> None:
        done = roll_up_days()
        self.stdout.write(f"{done} day buckets recomputed.")
