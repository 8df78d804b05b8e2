# Placeholder routes so base.html renders; the developer console replaces these.
from django.urls import path
from django.views.generic import TemplateView

urlpatterns = [
    path("apps/", TemplateView.as_view(template_name="portal/placeholder.html"), name="applications"),
]
