"""HTTP routes of the bosses app (pages and the JSON state API)."""

from django.urls import path

from transport import health_views, ops_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health_views.healthz, name="healthz"),
    path("readyz", health_views.readyz, name="readyz"),
    path("metrics", health_views.metrics_view, name="metrics"),
    path("api/bosses/<slug:slug>/state", views.state_api, name="boss-state-api"),
    path("ops/", ops_views.ops_index, name="ops-index"),
    path("ops/bosses/<slug:slug>/", ops_views.ops_boss, name="ops-boss"),
    path("ops/bosses/<slug:slug>/<str:action>/", ops_views.ops_boss_action, name="ops-boss-action"),
    path("play/<slug:slug>/", ops_views.play, name="play"),
]
