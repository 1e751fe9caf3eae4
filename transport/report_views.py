"""The fight report: an HTML page with server-drawn SVG charts, and its JSON and CSV exports.

Thin views over :func:`bosses.report.fight_report` (docs/report.md). The charts are drawn
here as SVG geometry (no chart library, no CDN: production networks have no internet), so
the page reads without JavaScript; ``static/js/report.js`` only adds hover read-outs and
series toggles. Access is the dashboard's: staff with ``bosses.view_bossencounter``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from bosses.report import fight_report
from bosses.selectors import boss_get
from core.errors import UnknownBoss
from transport.ops_views import _not_found, _requires
from transport.permissions import WATCH_BOSS, can_watch
from transport.views import render_page

FIGHT_RE = re.compile(r"[1-9][0-9]{0,8}")
# SVG canvas of both charts (viewBox units; the page scales them to its width).
CHART_W, HP_CHART_H, SHARD_CHART_H = 960, 260, 220
PAD_L, PAD_R, PAD_T, PAD_B = 64, 14, 14, 26
X_TICKS = 6
# Shard series colours (the last one is "(other)" when there are more shards than colours).
SERIES_COLOURS = (
    "#7aa2ff",
    "#3fb950",
    "#f0883e",
    "#d2a8ff",
    "#e5534b",
    "#39c5cf",
    "#d29922",
    "#ff7eb6",
    "#6e7681",
)
# a crash saga that ended a session without a crash (left, replaced, retired) is grey
SAGA_COLOURS = {"crash": "#f85149", "restore": "#39c5cf"}
CSV_FIXED_COLUMNS = (
    "bucket",
    "start_s",
    "end_s",
    "ticks",
    "applied",
    "overkill",
    "accepted",
    "hp_end",
    "hp_end_pct",
    "marks",
)


class _Echo:
    """A file-like sink for csv.writer that hands each formatted row back to the caller."""

    def write(self, value: str) -> str:
        return value


def _load(slug: str, fight: str, top: str | None = None) -> dict[str, Any]:
    """The report of ``slug``'s fight ``fight`` (the URL's text) or :class:`UnknownBoss`."""
    boss = boss_get(slug=slug)
    if not FIGHT_RE.fullmatch(fight):
        raise UnknownBoss(f"{fight!r} is not a fight number of boss {slug!r} (use 1 to {boss.fight})")
    kwargs: dict[str, Any] = {}
    if top and top.isdigit():
        kwargs["top"] = int(top)
    return fight_report(boss=boss, fight=int(fight), **kwargs)


def _fmt_t(ms: float, *, span_ms: float | None = None) -> str:
    """A time into the fight: ``m:ss`` (``h:mm:ss``), or seconds with decimals when the fight
    (``span_ms``, default ``ms`` itself) is shorter than a minute."""
    ref = span_ms if span_ms is not None else ms
    if ref < 60_000:
        return f"{ms / 1000:.2f} s" if ref < 10_000 else f"{ms / 1000:.1f} s"
    s = round(ms / 1000)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _compact(n: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def _x_axis(span_ms: int, height: int) -> list[dict[str, Any]]:
    plot_w = CHART_W - PAD_L - PAD_R
    return [
        {
            "x": round(PAD_L + i * plot_w / X_TICKS, 1),
            "y": height - PAD_B + 16,
            "label": _fmt_t(span_ms * i / X_TICKS, span_ms=span_ms),
            "anchor": "end" if i == X_TICKS else "middle",
        }
        for i in range(X_TICKS + 1)
    ]


def _label(x: float, i: int) -> dict[str, Any]:
    """Where a mark's label goes: staggered down (marks close in time do not overprint) and
    to the left of its line near the right edge (the end of the fight is often marked)."""
    right = x > CHART_W - PAD_R - 90
    return {"anchor": "end" if right else "start", "dx": -4 if right else 4, "dy": 12 + 13 * (i % 3)}


def _charts(report: dict[str, Any]) -> dict[str, Any]:
    """SVG geometry of the HP chart (line, phase lines and marks, saga marks) and of the
    stacked shard-damage bars, in viewBox units."""
    summary = report["summary"]
    span = max(summary["ended_ms"] - summary["started_ms"], 1)
    return {"hp": _hp_chart(report, span_ms=span), "shards": _shard_chart(report, span_ms=span)}


def _hp_chart(report: dict[str, Any], *, span_ms: int) -> dict[str, Any]:
    """The HP line and area, its axes, the phase thresholds and the phase, status and saga marks."""
    hp = report["hp"]
    max_hp = max(hp["max_hp"], 1)
    plot_w = CHART_W - PAD_L - PAD_R

    def x(t_ms: float) -> float:
        return round(PAD_L + min(max(t_ms, 0), span_ms) / span_ms * plot_w, 1)

    hp_plot_h = HP_CHART_H - PAD_T - PAD_B

    def y(value: float) -> float:
        return round(PAD_T + (1 - value / max_hp) * hp_plot_h, 1)

    points = hp["points"]
    line = " ".join(f"{x(p['t_ms'])},{y(p['hp'])}" for p in points)
    bottom = HP_CHART_H - PAD_B
    area = f"{x(points[0]['t_ms'])},{bottom} {line} {x(points[-1]['t_ms'])},{bottom}" if points else ""
    hp_chart = {
        "w": CHART_W,
        "h": HP_CHART_H,
        "line": line,
        "area": area,
        "plot": {"x0": PAD_L, "x1": CHART_W - PAD_R, "y0": PAD_T, "y1": bottom},
        "y_ticks": [
            {"y": y(max_hp * pct / 100), "label": f"{pct}%", "value": _compact(max_hp * pct / 100)}
            for pct in (0, 25, 50, 75, 100)
        ],
        "x_ticks": _x_axis(span_ms, HP_CHART_H),
        "thresholds": [{"y": y(p["hp"]), "name": p["name"]} for p in hp["phases"]],
        "phase_marks": [
            {**m, "x": x(m["t_ms"]), "y": y(m["hp"]), **_label(x(m["t_ms"]), i)}
            for i, m in enumerate(report["marks"]["phases"])
        ],
        "status_marks": [
            {**m, "x": x(m["t_ms"]), **_label(x(m["t_ms"]), i)}
            for i, m in enumerate(st for st in report["marks"]["statuses"] if st["version"] != 1)
        ],
        "saga_marks": [
            {**m, "x": x(m["t_ms"]), "colour": SAGA_COLOURS.get(m["kind"], "#8b93a7")}
            for m in report["marks"]["sagas"]
        ],
    }
    return hp_chart


def _shard_chart(report: dict[str, Any], *, span_ms: int) -> dict[str, Any]:
    """The shard damage as stacked bars per time bucket, its axes and the series' legend."""
    plot_w = CHART_W - PAD_L - PAD_R
    shards = report["shards"]
    buckets = shards["buckets"]
    shard_plot_h = SHARD_CHART_H - PAD_T - PAD_B
    peak = max((sum(b["damage"]) for b in buckets), default=0) or 1
    slot = plot_w / max(len(buckets), 1)
    bars = []
    for i, b in enumerate(buckets):
        base = SHARD_CHART_H - PAD_B
        for s, amount in enumerate(b["damage"]):
            if amount <= 0:
                continue
            h = amount / peak * shard_plot_h
            base -= h
            bars.append(
                {
                    "x": round(PAD_L + i * slot + slot * 0.08, 2),
                    "y": round(base, 2),
                    "w": round(slot * 0.84, 2),
                    "h": round(h, 2),
                    "series": s,
                    "colour": SERIES_COLOURS[min(s, len(SERIES_COLOURS) - 1)],
                    "title": f"{shards['series'][s]}: {amount:,} ({_fmt_t(b['start_ms'], span_ms=span_ms)} to {_fmt_t(b['end_ms'], span_ms=span_ms)})",
                }
            )
    shard_chart = {
        "w": CHART_W,
        "h": SHARD_CHART_H,
        "bars": bars,
        "plot": {"x0": PAD_L, "x1": CHART_W - PAD_R, "y0": PAD_T, "y1": SHARD_CHART_H - PAD_B},
        "y_ticks": [
            {"y": round(PAD_T + (1 - f) * shard_plot_h, 1), "label": _compact(peak * f)} for f in (0, 0.5, 1)
        ],
        "x_ticks": _x_axis(span_ms, SHARD_CHART_H),
        "legend": [
            {"name": name, "colour": SERIES_COLOURS[min(i, len(SERIES_COLOURS) - 1)], "series": i}
            for i, name in enumerate(shards["series"])
        ],
        "bucket_s": round(shards["bucket_ms"] / 1000, 3),
    }
    return shard_chart


def _kpis(report: dict[str, Any]) -> list[dict[str, str]]:
    """The summary header's figures, formatted for reading (the raw numbers are in the JSON)."""
    s = report["summary"]
    span = s["ended_ms"] - s["started_ms"]
    peak_at = "" if s["peak_dps_at_ms"] is None else f"at {_fmt_t(s['peak_dps_at_ms'], span_ms=span)}"
    return [
        {
            "id": "duration",
            "label": "Duration",
            "value": _fmt_t(s["duration_s"] * 1000),
            "hint": f"{s['ticks']:,} ticks",
        },
        {
            "id": "damage",
            "label": "Total damage",
            "value": f"{s['total_damage']:,}",
            "hint": f"overkill {s['overkill']:,}",
        },
        {"id": "peak-dps", "label": "Peak DPS", "value": f"{s['peak_dps']:,}", "hint": peak_at},
        {
            "id": "avg-dps",
            "label": "Average DPS",
            "value": f"{s['avg_dps']:,}",
            "hint": "over the whole fight",
        },
        {"id": "players", "label": "Players", "value": f"{s['players']:,}", "hint": "who dealt damage"},
        {"id": "shards", "label": "Shards", "value": f"{s['shards']:,}", "hint": "that sent damage"},
        {
            "id": "final-hp",
            "label": "Final HP",
            "value": f"{s['hp_left_pct']:g}%",
            "hint": f"{s['final_hp']:,} / {s['max_hp']:,}",
        },
        {
            "id": "crashes",
            "label": "Crashes",
            "value": f"{s['crashes']:,}",
            "hint": f"{s['restores']:,} restore(s) · {s['left']:,} left cleanly",
        },
    ]


def _tables(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Leaderboard, shard totals, rewards and saga marks with their display texts."""
    total = max(sum(row["damage"] for row in report["shards"]["totals"]), 1)
    span = report["summary"]["ended_ms"] - report["summary"]["started_ms"]
    return {
        "leaderboard": [
            {**row, "damage_text": f"{row['damage']:,}"} for row in report["leaderboard"]["rows"]
        ],
        "shards": [
            {**row, "damage_text": f"{row['damage']:,}", "share": f"{100 * row['damage'] / total:.1f}%"}
            for row in report["shards"]["totals"]
        ],
        "rewards": [
            {**row, "damage_text": f"{row['damage'] or 0:,}", "players_text": f"{row['players']:,}"}
            for row in report["rewards"]
        ],
        "sagas": [
            {**m, "t_text": _fmt_t(max(m["t_ms"], 0), span_ms=span), "amount_text": f"{m['amount']:,}"}
            for m in report["marks"]["sagas"]
        ],
    }


def _json_not_found(exc: UnknownBoss) -> JsonResponse:
    return JsonResponse({"error": {"code": exc.code, "message": str(exc)}}, status=404)


@_requires(can_watch, WATCH_BOSS)
def fight_report_page(request: HttpRequest, slug: str, fight: str) -> HttpResponse:
    """``/ops/bosses/<slug>/fights/<n>/report/``: the fight's report page."""
    try:
        report = _load(slug, fight, request.GET.get("top"))
    except UnknownBoss as exc:
        return _not_found(request, exc)
    page_data = {
        "span_ms": report["summary"]["ended_ms"] - report["summary"]["started_ms"],
        "max_hp": report["hp"]["max_hp"],
        "points": [[p["t_ms"], p["hp"], p["version"]] for p in report["hp"]["points"]],
        "plot": {"x0": PAD_L, "x1": CHART_W - PAD_R, "w": CHART_W},
    }
    return render_page(
        request,
        "report/fight.html",
        {
            "report": report,
            "charts": _charts(report),
            "kpis": _kpis(report),
            "tables": _tables(report),
            "page_data": page_data,
        },
    )


@_requires(can_watch, WATCH_BOSS)
def fight_report_json(request: HttpRequest, slug: str, fight: str) -> HttpResponse:
    """``.../report.json``: the whole report as JSON (``?top=N`` for a longer leaderboard)."""
    try:
        report = _load(slug, fight, request.GET.get("top"))
    except UnknownBoss as exc:
        return _json_not_found(exc)
    return JsonResponse(report)


def _bucket_marks(report: dict[str, Any]) -> list[list[str]]:
    """The marks (phase, status, saga) that fall in each shard bucket, as short texts."""
    shards = report["shards"]
    bucket_ms, n = shards["bucket_ms"], len(shards["buckets"])
    out: list[list[str]] = [[] for _ in range(n)]

    def at(t_ms: int) -> list[str]:
        return out[min(max(t_ms, 0) // bucket_ms, n - 1)]

    for m in report["marks"]["statuses"]:
        at(m["t_ms"]).append(f"status:{m['status']}")
    for m in report["marks"]["phases"]:
        at(m["t_ms"]).append(f"phase:{m['name']}")
    for m in report["marks"]["sagas"]:
        at(m["t_ms"]).append(f"{m['kind']}:{m['shard'] or '-'}:{m['policy'] or '-'}:{m['amount']}")
    return out


def _csv_rows(report: dict[str, Any]) -> Iterator[list[Any]]:
    shards = report["shards"]
    max_hp = report["hp"]["max_hp"] or 1
    yield [*CSV_FIXED_COLUMNS, *(f"shard:{name}" for name in shards["series"])]
    for i, (b, marks) in enumerate(zip(shards["buckets"], _bucket_marks(report))):
        yield [
            i,
            f"{b['start_ms'] / 1000:.3f}",
            f"{b['end_ms'] / 1000:.3f}",
            b["ticks"],
            b["applied"],
            b["overkill"],
            b["accepted"],
            b["hp_end"],
            f"{100 * b['hp_end'] / max_hp:.2f}",
            "; ".join(marks),
            *b["damage"],
        ]


@_requires(can_watch, WATCH_BOSS)
def fight_report_csv(request: HttpRequest, slug: str, fight: str) -> HttpResponse:
    """``.../report.csv``: one row per time bucket of the shard chart (streamed)."""
    try:
        report = _load(slug, fight)
    except UnknownBoss as exc:
        return _not_found(request, exc)
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in _csv_rows(report)), content_type="text/csv; charset=utf-8"
    )
    name = f"{report['boss']['slug']}-fight-{report['fight']}-report.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
