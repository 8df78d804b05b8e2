from django.urls import path

from portal.views import tokens

urlpatterns = [
    path("", tokens.token_list, name="access_tokens"),
    path("<int:pk>/revoke/", tokens.token_revoke, name="access_token_revoke"),
]
