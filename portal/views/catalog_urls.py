# Placeholder routes so base.html renders; the catalog area replaces these.
from django.urls import path
from django.views.generic import TemplateView

urlpatterns = [
    path("", TemplateView.as_view(template_name="portal/placeholder.html"), name="catalog"),
]
