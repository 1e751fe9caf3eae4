// The fight report page: the server draws both SVG charts; this only adds a hover read-out on
// the HP chart (the archived point nearest the cursor) and legend buttons that hide a shard.

// as the server's axis labels: seconds with decimals for a fight shorter than a minute
const fmtT = (ms, spanMs) => {
  if (spanMs < 60_000) return `${(ms / 1000).toFixed(spanMs < 10_000 ? 2 : 1)} s`;
  const s = Math.round(ms / 1000);
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${Math.floor(s / 60)}:${ss}`;
};

function nearest(points, t) {
  // points are sorted by time: binary search, then pick the closer neighbour
  let lo = 0, hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid][0] < t) lo = mid + 1; else hi = mid;
  }
  if (lo > 0 && Math.abs(points[lo - 1][0] - t) <= Math.abs(points[lo][0] - t)) lo -= 1;
  return points[lo];
}

function hpHover(data) {
  const svg = document.getElementById("hp-chart");
  const cursor = document.getElementById("hp-cursor");
  const readout = document.getElementById("hp-readout");
  if (!svg || !data.points.length) return;
  const initial = readout.textContent;
  const { x0, x1, w } = data.plot;
  const span = Math.max(data.span_ms, 1);
  svg.addEventListener("mousemove", (ev) => {
    const box = svg.getBoundingClientRect();
    const x = ((ev.clientX - box.left) / box.width) * w;
    if (x < x0 || x > x1) return;
    const [t, hp, version] = nearest(data.points, ((x - x0) / (x1 - x0)) * span);
    const cx = x0 + (t / span) * (x1 - x0);
    cursor.setAttribute("x1", cx);
    cursor.setAttribute("x2", cx);
    cursor.setAttribute("visibility", "visible");
    const pct = data.max_hp ? ((100 * hp) / data.max_hp).toFixed(2) : "0";
    readout.textContent = `${fmtT(t, span)} · HP ${hp.toLocaleString("en-US")} (${pct}%) · version ${version}`;
  });
  svg.addEventListener("mouseleave", () => {
    cursor.setAttribute("visibility", "hidden");
    readout.textContent = initial;
  });
}

function legendToggles() {
  const legend = document.getElementById("shard-legend");
  if (!legend) return;
  legend.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-series]");
    if (!button) return;
    const off = button.classList.toggle("off");
    for (const bar of document.querySelectorAll(`#shard-chart .series.s${button.dataset.series}`)) {
      bar.classList.toggle("off", off);
    }
  });
}

export function startReport(data) {
  hpHover(data);
  legendToggles();
  window.__report = data; // for the page test and a curious operator's console
}
