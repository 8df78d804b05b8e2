from django.core.management.base import BaseCommand

from analytics.webhooks import deliver_webhooks


class Command(BaseCommand):
    help = "Send the alert webhooks that are due, retrying failed ones with backoff (what beat runs every 30 s)."

    def handle(self, *args, **options) -> None:
        counts = deliver_webhooks()
        self.stdout.write(", ".join(f"{count} {what}" for what, count in counts.items()) + ".")
