from django.urls import path

from portal.views import analytics

urlpatterns = [
    path("usage/", analytics.usage, name="usage"),
    path("usage/calls/", analytics.usage_calls, name="usage_calls"),
    path("usage/calls/export.csv", analytics.usage_export, name="usage_export"),
    path("usage/calls/<str:request_id>/", analytics.usage_call, name="usage_call"),
    path("staff/analytics/", analytics.staff_dashboard, name="staff_dashboard"),
    path("staff/calls/", analytics.staff_calls, name="staff_calls"),
    path("staff/calls/export.csv", analytics.staff_export, name="staff_export"),
    path("staff/calls/<str:request_id>/", analytics.staff_call, name="staff_call"),
]
