"""E-mail tenant owners whose LLM spend budgets reached 80 % or 100 % this period (once each)."""

from typing import Any

from django.core.management.base import BaseCommand

from llm import budget_alerts


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: Any, **options: Any) -> None:
        sent = budget_alerts.send_budget_alerts()
        for alert in sent:
            self.stdout.write(
                f"budget {alert.budget_id}: {alert.threshold} % (${alert.spend_usd}) -> {alert.recipients} recipient(s)"
            )
        self.stdout.write(f"{len(sent)} budget alert(s) sent.")
