from celery import shared_task

from llm import budget_alerts


@shared_task(name="llm.send_budget_alerts", ignore_result=True)
def send_budget_alerts() -> int:
    """Beat runs this every minute: e-mails at 80 % and 100 % of spend budgets, once per period."""
    return len(budget_alerts.send_budget_alerts())
