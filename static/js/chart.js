// A tiny HP-over-time line chart on a canvas (no library, no build step).

export class HpChart {
  constructor(canvas, { maxHp, windowMs = 60_000, maxPoints = 1200 } = {}) {
    this.canvas = canvas;
    this.maxHp = maxHp;
    this.windowMs = windowMs;
    this.maxPoints = maxPoints;
    this.points = []; // [ts_ms, hp, version]
    this.offsetMs = 0; // server clock - local clock, so "now" lines up with tick stamps
  }

  setClockOffset(serverMs) {
    this.offsetMs = serverMs - Date.now();
  }

  load(series) {
    this.points = series.slice(-this.maxPoints);
  }

  add(ts, hp, version) {
    const last = this.points[this.points.length - 1];
    if (last && version <= last[2]) return;
    this.points.push([ts ?? Date.now() + this.offsetMs, hp, version]);
    if (this.points.length > this.maxPoints) this.points.shift();
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const padL = 56, padB = 18, padT = 6, padR = 8;
    const now = Date.now() + this.offsetMs;
    const t0 = now - this.windowMs;
    const x = (t) => padL + ((t - t0) / this.windowMs) * (w - padL - padR);
    const y = (hp) => padT + (1 - hp / this.maxHp) * (h - padT - padB);
    g.font = "11px ui-monospace, monospace";
    g.fillStyle = "#8b93a7";
    g.strokeStyle = "#2a3040";
    g.lineWidth = 1;
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      const yy = Math.round(y(this.maxHp * f)) + 0.5;
      g.beginPath(); g.moveTo(padL, yy); g.lineTo(w - padR, yy); g.stroke();
      g.fillText(`${Math.round(f * 100)}%`, 8, yy + 4);
    }
    for (let s = 0; s <= this.windowMs / 1000; s += 15) {
      const xx = x(now - s * 1000);
      g.fillText(s ? `-${s}s` : "now", xx - (s ? 14 : 24), h - 4);
    }
    const pts = this.points.filter((p) => p[0] >= t0 - 5000);
    if (!pts.length) return;
    g.strokeStyle = "#f0883e";
    g.lineWidth = 2;
    g.beginPath();
    let first = true;
    let prevHp = null;
    for (const [ts, hp] of pts) {
      const xx = Math.max(padL, x(ts));
      if (first) { g.moveTo(xx, y(hp)); first = false; }
      else { g.lineTo(xx, y(prevHp)); g.lineTo(xx, y(hp)); } // steps: HP changes at ticks
      prevHp = hp;
    }
    g.lineTo(x(now), y(prevHp));
    g.stroke();
    g.lineTo(x(now), y(0)); g.lineTo(Math.max(padL, x(pts[0][0])), y(0)); g.closePath();
    g.fillStyle = "rgba(240, 136, 62, .12)";
    g.fill();
  }
}
