// HP display model shared by the player page and the dashboard (no DOM in here).
//
// Truth: the newest state message (absolute hp + version). Anything not newer than what we
// show is ignored, so a lost or reordered message costs nothing.
// Prediction (player page): a click subtracts the predicted damage at once (the boss's
// min_damage: the least a hit deals, so the ack's real damage only ever lowers the bar).
// Which of the player's own hits a truth already holds is not said by the truth, so the
// model never guesses it: each hit remembers `base`, the truth shown when it was clicked
// (which surely does not hold it, nor any later hit). Every hit i then bounds the HP from
// above: HP <= base_i - (hit i and every later hit), and so does the truth. The target is the
// lowest of these bounds: it counts a hit only while no truth can hold it, never twice, and
// it never rises while the truth does not (HP only falls within a fight). A hit whose bound is
// no lower than the truth is done (the truth says at least as much; it stays done). A hit never
// acked is dropped after expireMs (its socket died), an acked one after dropMs whatever
// happened (a crashed gateway lost it); a truth that rose (a reset or a restore), a status
// other than live or a dead boss drop every hit: the truth is then all we know.
// Interpolation: the shown value eases toward the target with a time constant, except that
// our own hits snap down at once (the "hit feels instant" rule).
// `protocol` is the page's protocol constants (protocol.js): the model learns from it which
// status is live, so this file needs no DOM and no status names of its own.

export class HpModel {
  constructor({ hp, maxHp, protocol, version = 0, expireMs = 3000, dropMs = 10000, smoothMs = 160 } = {}) {
    this.liveStatus = protocol.status.LIVE;
    this.maxHp = maxHp;
    this.truthHp = hp;
    this.version = version;
    this.gen = 0;
    this.status = "";
    this.expireMs = expireMs;
    this.dropMs = Math.max(dropMs, expireMs);
    this.smoothMs = smoothMs;
    this.pending = new Map(); // id -> {amount, base, sentAt, ackAt}, oldest first
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
    const rose = msg.hp > this.truthHp || gen !== this.gen;
    this.gen = gen;
    this.truthHp = msg.hp;
    this.version = msg.version;
    if (typeof msg.max_hp === "number") this.maxHp = msg.max_hp;
    if (msg.status) this.status = msg.status;
    if (rose || msg.hp === 0 || msg.status !== this.liveStatus) this.pending.clear();
    this.prune(now);
    if (force) this.shown = Math.min(this.shown, this.target(now));
    return true;
  }

  // The player clicked: subtract the predicted damage now. Returns the hit's id.
  predict(amount, now) {
    const id = this.nextId++;
    const before = this.target(now);
    this.pending.set(id, { amount, base: this.truthHp, sentAt: now, ackAt: null });
    // the target fell by exactly `amount`: so does the bar, at once
    this.shown = Math.max(0, Math.min(this.shown, before) - amount);
    return id;
  }

  // The server accepted the hit with its real damage.
  ack(id, damage, now) {
    const p = this.pending.get(id);
    if (!p) return;
    p.amount = damage;
    p.ackAt = now;
    this.shown = Math.min(this.shown, this.target(now)); // a snap down, never up
  }

  // The server refused the hit (rate limit, boss not live ...): give the HP back smoothly.
  reject(id) {
    this.pending.delete(id);
  }

  // Drop the hits that expired, then the oldest ones the truth already accounts for.
  prune(now) {
    for (const [id, p] of this.pending) {
      const stale = p.ackAt === null ? now - p.sentAt > this.expireMs : now - p.ackAt > this.dropMs;
      if (stale) this.pending.delete(id);
    }
    let later = 0;
    for (const p of this.pending.values()) later += p.amount;
    for (const [id, p] of this.pending) {
      if (p.base - later < this.truthHp) break; // its bound is below the truth: still counts
      this.pending.delete(id); // done: the truth is no higher than its bound, for good
      later -= p.amount;
    }
  }

  // Our hits' damage the target takes off the truth (0 once the truth holds them all).
  pendingDamage(now) {
    return this.truthHp - this.target(now);
  }

  // What the bar should converge to: the lowest upper bound of the HP (see the top).
  target(now = performance.now()) {
    this.prune(now);
    let later = 0;
    let low = this.truthHp;
    const hits = [...this.pending.values()];
    for (let i = hits.length - 1; i >= 0; i--) {
      later += hits[i].amount;
      low = Math.min(low, hits[i].base - later);
    }
    return Math.max(0, low);
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
    return this.target(now) === this.truthHp && this.pending.size === 0 && this.shown === this.truthHp;
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
