from django.core.management.base import BaseCommand

from analytics.alerts import evaluate_alerts


class Command(BaseCommand):
    help = "Judge every enabled alert rule now, opening and resolving events (what beat runs each minute)."

    def handle(self, *args, **options) -> None:
        changes = evaluate_alerts()
        for change in changes:
            self.stdout.write(f"rule {change.rule_id}: {change.state} (value {change.value})")
        self.stdout.write(f"{len(changes)} alert changes.")
