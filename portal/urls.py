"""URL map. Each part is owned by one module so areas grow without stepping on each other."""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path


def healthz(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/", include("portal.rest.urls")),
    path("account/tokens/", include("portal.views.tokens_urls")),
    path("accounts/", include("portal.views.accounts_urls")),
    path("provider/", include("portal.views.provider_urls")),
    path("", include("portal.views.catalog_urls")),
    path("", include("portal.views.console_urls")),
    path("", include("portal.views.analytics_urls")),
]
