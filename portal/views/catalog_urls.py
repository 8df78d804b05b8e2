from django.urls import path

from portal.views import catalog

urlpatterns = [
    path("", catalog.catalog, name="catalog"),
    path("apis/<slug:slug>/", catalog.api_detail, name="api_detail"),
    path("apis/<slug:slug>/<str:version>/docs/", catalog.api_docs, name="api_docs"),
    path("apis/<slug:slug>/<str:version>/openapi.json", catalog.openapi_document, name="api_openapi"),
]
