from django.urls import path

from portal.views import console, members

urlpatterns = [
    path("apps/", console.applications, name="applications"),
    path("apps/<int:pk>/", console.application_detail, name="application_detail"),
    path("apps/<int:pk>/edit/", console.application_edit, name="application_edit"),
    path("apps/<int:pk>/delete/", console.application_delete, name="application_delete"),
    path("apps/<int:pk>/keys/", console.key_create, name="key_create"),
    path("apps/<int:pk>/keys/<int:key_pk>/rotate/", console.key_rotate, name="key_rotate"),
    path("apps/<int:pk>/keys/<int:key_pk>/revoke/", console.key_revoke, name="key_revoke"),
    path("apis/<slug:slug>/subscribe/", console.subscribe, name="subscribe"),
    path("team/", members.members, name="members"),
    path("team/<int:pk>/", members.member_update, name="member_update"),
    path("invitations/<str:token>/", members.accept_invitation, name="accept_invitation"),
]
