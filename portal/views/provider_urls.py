from django.urls import path

from portal.views import prompts, provider

urlpatterns = [
    path("", provider.apis, name="provider_apis"),
    path("requests/", provider.requests, name="provider_requests"),
    path("requests/<int:pk>/<str:decision>/", provider.decide, name="provider_decide"),
    path("prompt-apis/new/", prompts.api_create, name="provider_prompt_api_create"),
    path("apis/<slug:slug>/", provider.api_detail, name="provider_api"),
    path("apis/<slug:slug>/prompt-versions/", prompts.version_create, name="provider_prompt_version_create"),
    path("apis/<slug:slug>/versions/<int:pk>/prompt/", prompts.prompt_edit, name="provider_prompt"),
    path("apis/<slug:slug>/versions/<int:pk>/playground/", prompts.playground, name="provider_playground"),
    path("apis/<slug:slug>/versions/", provider.version_create, name="provider_version_create"),
    path("apis/<slug:slug>/plans/", provider.plan_create, name="provider_plan_create"),
    path("apis/<slug:slug>/versions/<int:pk>/edit/", provider.version_edit, name="provider_version_edit"),
    path("apis/<slug:slug>/versions/<int:pk>/<str:move>/", provider.version_move, name="provider_version_move"),
]
