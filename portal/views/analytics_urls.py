from django.urls import path

from portal.views import analytics, reports

urlpatterns = [
    path("usage/", analytics.usage, name="usage"),
    path("usage/calls/", analytics.usage_calls, name="usage_calls"),
    path("usage/calls/export.csv", analytics.usage_export, name="usage_export"),
    path("usage/calls/<str:request_id>/", analytics.usage_call, name="usage_call"),
    path("usage/reports/", reports.trend_reports, name="trend_reports"),
    path("usage/reports/<int:pk>/", reports.trend_report, name="trend_report"),
    path("usage/reports/<int:pk>/report.csv", reports.trend_report_csv, name="trend_report_csv"),
    path("staff/analytics/", analytics.staff_dashboard, name="staff_dashboard"),
    path("staff/reports/", reports.staff_trend_reports, name="staff_trend_reports"),
    path("staff/calls/", analytics.staff_calls, name="staff_calls"),
    path("staff/calls/export.csv", analytics.staff_export, name="staff_export"),
    path("staff/calls/<str:request_id>/", analytics.staff_call, name="staff_call"),
]
