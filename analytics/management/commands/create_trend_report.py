from django.core.management.base import BaseCommand, CommandError

from analytics.models import ReportKind
from analytics.reports import create_trend_report, report_url
from portal.models import Tenant


class Command(BaseCommand):
    help = "Make an on-demand trend report of the last day or week, for one tenant (by slug) or the platform."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--kind", choices=ReportKind.values, default=ReportKind.DAILY)
        parser.add_argument("--tenant", help="the tenant's slug (default: the whole platform)")

    def handle(self, *args, **options) -> None:
        tenant = None
        if options["tenant"]:
            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"No tenant with the slug {options['tenant']!r}.")
        report = create_trend_report(options["kind"], tenant=tenant, on_demand=True)
        requests = report.data["current"]["requests"]
        self.stdout.write(
            f"Report {report.pk}: {requests} requests, {report.anomaly_count} anomalies. {report_url(report)}"
        )
