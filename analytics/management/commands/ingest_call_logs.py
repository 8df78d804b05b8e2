from django.core.management.base import BaseCommand

from analytics.ingest import ingest_call_logs


class Command(BaseCommand):
    help = "Move call records from the gateway's Redis stream into the CallLog table (what beat runs)."

    def handle(self, *args, **options):
        stored = ingest_call_logs()
        self.stdout.write(f"{stored} call records ingested.")
