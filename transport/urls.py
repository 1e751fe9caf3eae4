"""HTTP routes of the bosses app (pages and the JSON state API)."""

from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from transport import health_views, ops_views, views
from transport.report_views import fight_report_csv, fight_report_json, fight_report_page

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health_views.healthz, name="healthz"),
    path("readyz", health_views.readyz, name="readyz"),
    path("metrics", health_views.metrics_view, name="metrics"),
    path("api/bosses/<slug:slug>/state", views.state_api, name="boss-state-api"),
    path("bosses/<slug:slug>/spawns.ics", views.spawns_ics, name="boss-spawns-ics"),
    path("ops/", ops_views.ops_index, name="ops-index"),
    path("ops/bosses/<slug:slug>/", ops_views.ops_boss, name="ops-boss"),
    path("ops/bosses/<slug:slug>/<str:action>/", ops_views.ops_boss_action, name="ops-boss-action"),
    path("ops/bosses/<slug:slug>/fights/<str:fight>/report/", fight_report_page, name="fight-report"),
    path(
        "ops/bosses/<slug:slug>/fights/<str:fight>/report.json", fight_report_json, name="fight-report-json"
    ),
    path("ops/bosses/<slug:slug>/fights/<str:fight>/report.csv", fight_report_csv, name="fight-report-csv"),
    path("play/<slug:slug>/", ops_views.play, name="play"),
    # no boss named: the home page lists them (each with its player page)
    path("play/", RedirectView.as_view(pattern_name="home"), name="play-index"),
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg")), name="favicon"),
]
