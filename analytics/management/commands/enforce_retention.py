from django.core.management.base import BaseCommand

from analytics.retention import enforce_retention, retention_days


class Command(BaseCommand):
    help = "Delete raw calls and rollups past their retention tier (PORTICO_RETENTION_*; what beat runs daily)."

    def handle(self, *args, **options) -> None:
        for tier, count in enforce_retention().items():
            kept = f"older than {days} days" if (days := retention_days(tier)) else "kept forever"
            self.stdout.write(f"{tier}: {count} rows deleted ({kept}).")
