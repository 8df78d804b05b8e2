from django.core.management.base import BaseCommand

from analytics.models import ReportKind
from analytics.reports import send_trend_reports


class Command(BaseCommand):
    help = (
        "Make the scheduled trend reports for the UTC day (or ISO week) just ended, for the platform and every "
        "tenant with calls, and e-mail each tenant's owners once (what beat runs)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--kind", choices=ReportKind.values, default=ReportKind.DAILY)

    def handle(self, *args, **options) -> None:
        made = send_trend_reports(options["kind"])
        mailed = sum(1 for report in made if report.emailed_to)
        self.stdout.write(f"{len(made)} {options['kind']} trend reports stored ({mailed} mailed so far).")
