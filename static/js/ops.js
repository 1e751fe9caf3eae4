// Operator dashboard: live HP bar and chart, KPIs, per-shard table, event and saga feed.
// Fed by /ws/ops/bosses/<slug>/: an `ops` snapshot on connect and every refresh, and every
// `state` / `phase` / `defeated` / `expired` message as the tick publishes it.
import { HpModel, drawBar, formatHp } from "./hp.js";
import { HpChart } from "./chart.js";
import { LiveSocket, setConn } from "./live.js";
import { isEnded, readProtocol } from "./protocol.js";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const n = (v) => (v === null || v === undefined ? "—" : formatHp(v));
const ms = (v) => (v === null || v === undefined ? "—" : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
const clock = (ts) => (ts ? new Date(ts).toLocaleTimeString("en-GB", { hour12: false }) : "");

// `protocol`: the constants the server rendered into the page (statuses, closes).
export function startDashboard({ wsPath, snapshot, protocol = readProtocol() }) {
  const S = protocol.status;
  const s0 = snapshot.state;
  const model = new HpModel({ hp: s0.hp, maxHp: s0.max_hp, protocol, version: s0.version, smoothMs: 220 });
  model.status = s0.status;
  const chart = new HpChart($("chart"), { maxHp: s0.max_hp });
  chart.setClockOffset(snapshot.server_ms);
  chart.load(snapshot.series || []);
  const pushed = new Map(); // version -> feed entry from phase/defeated/expired pushes
  let lastOps = snapshot;
  let clockOffset = snapshot.server_ms - Date.now();
  const pushLags = [];
  // The push lag needs the page's clock against the authority's. The ops message's
  // server_ms cannot give it: that message is as late as the states (both leave the same
  // server), so the lag would cancel out and read 0. A ping's round trip does: the pong's
  // server_ms was read between sending and receiving, so offset = server_ms - midpoint, off
  // by at most half the round trip; the quickest of the last 10 round trips is kept.
  const clockSamples = []; // [rtt, offset]
  let pushOffset = null;
  let pingAt = null;
  function clockPing() {
    pingAt = Date.now();
    if (!socket.send({ type: "ping" })) pingAt = null;
  }
  function onPong(msg) {
    if (pingAt === null || typeof msg.server_ms !== "number") return;
    const now = Date.now();
    clockSamples.push([now - pingAt, msg.server_ms - (pingAt + now) / 2]);
    if (clockSamples.length > 10) clockSamples.shift();
    pushOffset = clockSamples.reduce((best, s) => (s[0] < best[0] ? s : best))[1];
    pingAt = null;
  }

  function showStatus(status, phase, version) {
    const badge = $("status");
    badge.className = `badge ${status}`;
    badge.textContent = status;
    if (phase !== undefined) $("phase").textContent = phase || "—";
    $("version").textContent = version;
    // which statuses allow each action comes from the server (data-allowed, ops_views.OPS_ACTIONS)
    for (const a of document.querySelectorAll("#actions [data-action]")) {
      a.classList.toggle("disabled", !a.dataset.allowed.split(" ").includes(status));
    }
  }

  function onState(msg) {
    if (!model.truth(msg, performance.now())) return;
    chart.add(msg.ts, msg.hp, msg.version);
    showStatus(msg.status, msg.phase, msg.version);
    if (msg.ts && pushOffset !== null) {
      pushLags.push(Date.now() + pushOffset - msg.ts);
      if (pushLags.length > 50) pushLags.shift();
      const sorted = [...pushLags].sort((a, b) => a - b);
      const p50 = sorted[Math.floor(sorted.length / 2)];
      $("k-push").textContent = ms(Math.max(0, p50));
      $("kc-push").classList.toggle("warn", p50 > 500);
    }
  }

  let resyncNext = false; // set on every reconnect: the first ops message is the new truth

  function renderOps(ops) {
    lastOps = ops;
    clockOffset = ops.server_ms - Date.now();
    chart.setClockOffset(ops.server_ms);
    if (ops.series) chart.load(ops.series);
    const force = resyncNext;
    resyncNext = false;
    // only if newer than what the pushes showed, except right after a reconnect (resync:
    // a reset boss starts again at version 1)
    if (model.truth(ops.state, performance.now(), { force })) {
      chart.add(ops.state.ts, ops.state.hp, ops.state.version);
      showStatus(ops.state.status, ops.state.phase, ops.state.version);
    }
    $("k-dps").textContent = n(ops.dps.dps);
    const t = ops.tick;
    $("k-beat").textContent = ms(t.beat_age_ms);
    $("k-beat-hint").textContent = t.interval_p99_ms !== null
      ? `beat p50 ${ms(t.interval_p50_ms)} · p99 ${ms(t.interval_p99_ms)}` : "no sync ticks yet";
    const stuck = t.beat_age_ms === null || t.beat_age_ms > 5 * ops.config.tick_interval_ms;
    $("kc-beat").classList.toggle("bad", stuck && [S.LIVE, S.PAUSED].includes(ops.state.status));
    $("k-buf").textContent = n(ops.buffered);
    const h = ops.health;
    const active = h.ok + h.late + h.crashed;
    if (h.done && !active) {
      $("k-shards").textContent = `${h.done}`;
      $("k-shards-hint").textContent = `took part · fight over`;
    } else {
      $("k-shards").textContent = `${h.ok}/${active}`;
      $("k-shards-hint").textContent = `healthy · ${h.late} late · ${h.crashed} crashed · ${h.left} left · ${h.idle} idle`;
    }
    $("kc-shards").classList.toggle("bad", h.crashed > 0);
    $("kc-shards").classList.toggle("warn", h.crashed === 0 && h.late > 0);
    const L = ops.ledger;
    $("ledger").textContent = `accepted ${n(L.accepted)} = applied ${n(L.applied)} + overkill ${n(L.overkill)} + buffered ${n(ops.buffered)}`
      + ` · recovered ${n(L.recovered)} · discarded ${n(L.discarded)} · policy ${ops.config.crash_policy}`;
    renderShards(ops.shards, L.accepted);
    renderSagas(ops.sagas);
    renderFeed(ops.events);
  }

  function renderShards(rows, accepted) {
    const body = $("shards").querySelector("tbody");
    if (!rows.length) { body.innerHTML = `<tr><td colspan="10" class="empty">No shards yet.</td></tr>`; return; }
    body.innerHTML = rows.map((r) => {
      const share = accepted > 0 ? `${((100 * r.contribution) / accepted).toFixed(1)}%` : "—";
      return `<tr class="health-${esc(r.health)}" data-shard="${esc(r.key)}">
        <td><b>${esc(r.name)}</b>${r.name !== r.key ? ` <span class="conn" style="font-family:var(--mono)">${esc(r.key)}</span>` : ""}</td>
        <td>${esc(r.region) || "—"}</td>
        <td><span class="badge ${esc(r.health)}">${esc(r.health)}</span></td>
        <td class="num">${r.heartbeat_age_ms === null ? "—" : ms(r.heartbeat_age_ms)}</td>
        <td class="num">${r.epoch ?? "—"}</td><td class="num">${n(r.last_seq)}</td>
        <td class="num">${n(r.buffered)}</td><td class="num">${n(r.held)}</td>
        <td class="num">${n(r.contribution)}</td><td class="num">${share}</td></tr>`;
    }).join("");
  }

  function renderSagas(sagas) {
    const body = $("sagas").querySelector("tbody");
    if (!sagas.length) { body.innerHTML = `<tr><td colspan="8" class="empty">No sagas this fight.</td></tr>`; return; }
    body.innerHTML = sagas.map((s) => `<tr>
      <td><b>${esc(s.ending)}</b> <span class="conn" style="font-family:var(--mono)">${esc(s.key)}</span></td>
      <td><span class="badge ${esc(s.status)}">${esc(s.status)}</span></td>
      <td>${esc(s.shard) || "—"}${s.epoch ? ` <span class="conn">epoch ${s.epoch}</span>` : ""}</td>
      <td>${esc(s.policy) || "—"}</td><td class="num">${n(s.amount)}</td><td class="num">${s.attempts}</td>
      <td>${s.steps.map(esc).join(" → ") || "—"}</td><td>${s.started_at ? clock(Date.parse(s.started_at)) : ""}</td></tr>`).join("");
  }

  function describe(e) {
    if (e.kind === "tick") {
      const parts = Object.entries(e.deltas).sort((a, b) => b[1] - a[1]).slice(0, 3)
        .map(([k, v]) => `${k} ${formatHp(v)}`).join(", ");
      const more = Object.keys(e.deltas).length > 3 ? ` +${Object.keys(e.deltas).length - 3} more` : "";
      const over = e.overkill ? ` · overkill ${formatHp(e.overkill)}` : "";
      return [`tick`, `−${formatHp(e.applied)} → ${formatHp(e.hp)} HP${over} (${parts}${more})`];
    }
    return [e.kind, `status → ${e.status}`];
  }

  function renderFeed(events) {
    const items = new Map();
    for (const e of events) { const [k, d] = describe(e); items.set(`${e.version}-log`, { v: e.version, ts: e.ts, k, d, cls: e.status }); }
    for (const [key, e] of pushed) items.set(key, e);
    const sorted = [...items.values()].sort((a, b) => b.v - a.v || (a.k === "tick" ? 1 : -1)).slice(0, 40);
    $("feed").innerHTML = sorted.length ? sorted.map((e) => `<li><span class="t">${clock(e.ts)}</span>
      <span class="k"><span class="badge ${esc(e.cls)}">${esc(e.k)}</span></span><span class="d">v${e.v} ${esc(e.d)}</span></li>`).join("")
      : `<li class="empty">No events yet.</li>`;
  }

  function onMessage(msg) {
    if (msg.type === "state") onState(msg);
    else if (msg.type === "ops") renderOps(msg);
    else if (msg.type === "pong") onPong(msg);
    // a phase change wears the amber badge of a pause (the badge classes are status names)
    else if (msg.type === "phase") { pushed.set(`${msg.version}-phase`, { v: msg.version, ts: msg.ts, k: "phase", d: `phase → ${msg.phase}`, cls: S.PAUSED }); renderFeed(lastOps.events); }
    // the end events (`defeated`, `expired`) are named after the status they announce
    else if (isEnded(protocol, msg.type)) {
      pushed.set(`${msg.version}-${msg.type}`, { v: msg.version, ts: msg.ts || Date.now() + clockOffset, k: msg.type, d: msg.type === S.DEFEATED ? "the boss is defeated" : "the fight expired", cls: msg.type });
      renderFeed(lastOps.events);
    } else if (msg.type === "error") console.warn("ops socket error", msg);
  }

  // Confirmation dialog for pause / resume / end (the links work without JS too).
  const dialog = $("confirm");
  for (const a of document.querySelectorAll("#actions [data-action]")) {
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      if (a.classList.contains("disabled")) return;
      $("confirm-form").action = a.getAttribute("href");
      $("confirm-title").textContent = `${a.dataset.label}: ${snapshot.name}?`;
      $("confirm-help").textContent = a.dataset.help;
      $("confirm-go").textContent = a.dataset.label;
      $("confirm-go").className = a.dataset.action === "end" ? "danger" : "primary";
      dialog.showModal();
    });
  }
  $("confirm-cancel").addEventListener("click", () => dialog.close());

  renderOps(snapshot);
  const frame = (now) => {
    drawBar($("hpbar"), model, model.frame(now));
    const pct = model.maxHp ? (100 * model.truthHp) / model.maxHp : 0;
    $("k-pct").textContent = `${pct.toFixed(1)}%`;
    $("k-hp").textContent = `${formatHp(model.truthHp)} of ${formatHp(model.maxHp)}`;
    chart.draw();
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  const socket = new LiveSocket(wsPath, {
    protocol,
    onMessage,
    onOpen: () => { resyncNext = true; clockPing(); },
    onStatus: (st, attempt) => setConn($("conn"), st, attempt),
  });
  setInterval(clockPing, 5000);
  window.__ops = { model, chart, socket, protocol, pushLags };
}
