// HP display model shared by the player page and the dashboard (no DOM in here).
//
// Truth: the newest state message (absolute hp + version). Anything not newer than what we
// show is ignored, so a lost or reordered message costs nothing.
// Prediction (player page): a click subtracts the expected damage at once; the ack replaces
// it with the real damage; the hit stays subtracted until a truth arrives that surely holds
// it (received settleMs after the ack: one shard flush + one sync tick), then the truth
// alone is shown. An acked hit is also let go holdMs after its ack (no tick came, e.g. the
// boss is idle or paused: the truth is then all we know), and a hit never acked expires
// after expireMs (its socket dropped).
// Interpolation: the shown value eases toward the target (truth minus pending hits) with a
// time constant, except that our own hits snap down at once (the "hit feels instant" rule).
// `protocol` is the page's protocol constants (protocol.js): the model learns from it which
// status is live, so this file needs no DOM and no status names of its own.

export class HpModel {
  constructor({ hp, maxHp, protocol, version = 0, settleMs = 300, holdMs = 1200, expireMs = 3000, smoothMs = 160 } = {}) {
    this.liveStatus = protocol.status.LIVE;
    this.maxHp = maxHp;
    this.truthHp = hp;
    this.version = version;
    this.gen = 0;
    this.status = "";
    this.settleMs = settleMs;
    this.holdMs = Math.max(holdMs, settleMs);
    this.expireMs = expireMs;
    this.smoothMs = smoothMs;
    this.pending = new Map(); // id -> {amount, sentAt, ackAt}
    this.shown = hp;
    this.nextId = 1;
    this.lastFrame = null;
  }

  // A state message (or snapshot). `force` accepts it whatever its version (a resync after
  // a reset starts versions again). Returns true when it became the new truth.
  truth(msg, now, { force = false } = {}) {
    if (typeof msg.version !== "number" || typeof msg.hp !== "number") return false;
    // `gen` counts restores of the authority from the archive: a higher one is the truth even
    // with a lower version (the restored authority counts versions from the archive's).
    const gen = typeof msg.gen === "number" ? msg.gen : 0;
    if (!force && gen <= this.gen && msg.version <= this.version) return false;
    if (!force && gen < this.gen) return false;
    this.gen = gen;
    this.truthHp = msg.hp;
    this.version = msg.version;
    if (typeof msg.max_hp === "number") this.maxHp = msg.max_hp;
    if (msg.status) this.status = msg.status;
    for (const [id, p] of this.pending) {
      const settled = p.ackAt !== null && now - p.ackAt >= this.settleMs;
      if (settled || msg.hp === 0 || msg.status !== this.liveStatus) this.pending.delete(id);
    }
    if (force) this.shown = Math.min(this.shown, this.target());
    return true;
  }

  // The player clicked: subtract the expected damage now. Returns the hit's id.
  predict(amount, now) {
    const id = this.nextId++;
    this.pending.set(id, { amount, sentAt: now, ackAt: null });
    this.shown = Math.max(0, this.shown - amount);
    return id;
  }

  // The server accepted the hit with its real damage.
  ack(id, damage, now) {
    const p = this.pending.get(id);
    if (!p) return;
    this.shown = Math.max(0, this.shown - (damage - p.amount));
    p.amount = damage;
    p.ackAt = now;
  }

  // The server refused the hit (rate limit, boss not live ...): give the HP back smoothly.
  reject(id) {
    this.pending.delete(id);
  }

  pendingDamage(now) {
    let sum = 0;
    for (const [id, p] of this.pending) {
      const stale = p.ackAt === null ? now - p.sentAt > this.expireMs : now - p.ackAt > this.holdMs;
      if (stale) { this.pending.delete(id); continue; }
      sum += p.amount;
    }
    return sum;
  }

  // What the bar should converge to: the truth minus our hits it does not hold yet.
  target(now = performance.now()) {
    return Math.max(0, this.truthHp - this.pendingDamage(now));
  }

  // Advance the animation to `now`; returns the HP to draw.
  frame(now) {
    const dt = this.lastFrame === null ? 16 : Math.max(0, now - this.lastFrame);
    this.lastFrame = now;
    const target = this.target(now);
    const k = 1 - Math.exp(-dt / this.smoothMs);
    this.shown += (target - this.shown) * k;
    if (Math.abs(target - this.shown) < 0.5) this.shown = target;
    return this.shown;
  }

  settled(now) {
    return this.pending.size === 0 && this.shown === this.truthHp;
  }
}

export function formatHp(n) {
  return Math.round(n).toLocaleString("en-US");
}

// Draw a model onto an .hp bar element (fill width + text); `ghost` shows the truth.
export function drawBar(el, model, shown) {
  const pct = model.maxHp > 0 ? (100 * shown) / model.maxHp : 0;
  el.querySelector(".fill").style.width = `${pct.toFixed(3)}%`;
  const ghost = el.querySelector(".ghost");
  if (ghost) ghost.style.width = `${((100 * model.truthHp) / model.maxHp).toFixed(3)}%`;
  el.querySelector(".text").textContent =
    `${formatHp(shown)} / ${formatHp(model.maxHp)}  (${pct.toFixed(1)}%)`;
  el.dataset.hp = String(Math.round(shown));
  el.dataset.truth = String(model.truthHp);
  el.dataset.version = String(model.version);
}
