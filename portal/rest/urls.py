from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from llm.rest import views as llm_views
from portal.rest.views import applications, catalog, keys, provider, subscriptions, tokens, versions

router = DefaultRouter(trailing_slash=True)
router.register("apis", catalog.CatalogViewSet, basename="api")
router.register("applications", applications.ApplicationViewSet, basename="application")
router.register("keys", keys.ApiKeyViewSet, basename="key")
router.register("subscriptions", subscriptions.SubscriptionViewSet, basename="subscription")
router.register("tokens", tokens.AccessTokenViewSet, basename="token")
router.register("versions", versions.VersionViewSet, basename="version")
router.register("provider/apis", provider.ProviderApiViewSet, basename="provider-api")
router.register("provider/versions", provider.ProviderVersionViewSet, basename="provider-version")
router.register("provider/plans", provider.ProviderPlanViewSet, basename="provider-plan")
router.register("provider/subscriptions", provider.ProviderSubscriptionViewSet, basename="provider-subscription")
llm_views.register(router)  # /api/v1/llm/providers, keys, models, routes, budgets


def not_found(request: HttpRequest) -> JsonResponse:
    """Anything else under /api/ is a client's typo: answer in JSON, not with the portal's page."""
    message = f"No endpoint at {request.path}; the endpoints are listed at /api/docs/."
    return JsonResponse({"error": {"code": "not_found", "message": message}}, status=404)


urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    re_path(r"^", not_found, name="api-not-found"),
]
