"""HTTP routes."""

from django.contrib import admin
from django.urls import include, path

from api.api import api
from audit.login_throttle import ThrottledAdminLoginForm

# failed logins per username and address are throttled (audit/login_throttle.py)
admin.site.login_form = ThrottledAdminLoginForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("transport.urls")),
]
