# Placeholder routes so base.html renders; the accounts area replaces these.
from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import TemplateView

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="portal/placeholder.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", TemplateView.as_view(template_name="portal/placeholder.html"), name="signup"),
]
