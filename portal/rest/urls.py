from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from portal.rest import views

router = DefaultRouter(trailing_slash=True)
router.register("apis", views.CatalogViewSet, basename="api")
router.register("applications", views.ApplicationViewSet, basename="application")
router.register("keys", views.ApiKeyViewSet, basename="key")
router.register("subscriptions", views.SubscriptionViewSet, basename="subscription")
router.register("versions", views.VersionViewSet, basename="version")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
