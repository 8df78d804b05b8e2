from celery import shared_task

from llm import budget_alerts, key_states


@shared_task(name="llm.send_budget_alerts", ignore_result=True)
def send_budget_alerts() -> int:
    """Beat runs this every minute: e-mails at 80 % and 100 % of spend budgets, once per period."""
    return len(budget_alerts.send_budget_alerts())


@shared_task(name="llm.sync_key_states", ignore_result=True)
def sync_key_states() -> int:
    """Beat runs this every 15 s: key states the gateway reported in Redis (a key refused
    with 401/403, a key resting after a 429) written to ProviderKey.state, changed rows only."""
    return key_states.sync_key_states()
