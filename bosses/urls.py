"""HTTP routes of the bosses app (pages and the JSON state API)."""
from django.urls import path

from bosses import views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/bosses/<slug:slug>/state", views.state_api, name="boss-state-api"),
]
