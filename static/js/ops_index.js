// /ops/: every boss at a glance. One socket (/ws/ops/) pushes one `overview` message with all
// bosses per second; each row is updated in place, and only the cells whose value changed are
// touched, so hundreds of bosses cost a few DOM writes per second.
import { formatHp } from "./hp.js";
import { LiveSocket, setConn } from "./live.js";
import { readProtocol } from "./protocol.js";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const ms = (v) => (v === null || v === undefined ? "—" : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
const num = (v) => (v === null || v === undefined ? "—" : formatHp(v));

function cell(tr, name) {
  return tr.querySelector(`[data-f="${name}"]`);
}

function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

function newRow(b) {
  const tr = document.createElement("tr");
  tr.dataset.slug = b.slug;
  const href = `/ops/bosses/${encodeURIComponent(b.slug)}/`;
  tr.innerHTML = `<td><a href="${href}"><b>${esc(b.name)}</b></a><br><span class="conn" style="font-family:var(--mono)">${esc(b.slug)}</span></td>
    <td><span class="badge" data-f="status"></span></td>
    <td><div class="hp small" data-f="hp"><div class="fill"></div><div class="text"></div></div></td>
    <td class="num" data-f="dps"></td>
    <td data-f="shards"><span class="ok"></span> / <span class="late"></span> / <span class="crashed"></span> / <span class="left"></span></td>
    <td class="num" data-f="lag"></td><td class="num" data-f="version"></td><td data-f="phase"></td>
    <td><a class="button" href="${href}">Dashboard</a></td>`;
  return tr;
}

export function renderRow(tr, b, S) {
  const badge = cell(tr, "status");
  if (badge.textContent !== b.status) {
    badge.className = `badge ${b.status}`;
    badge.textContent = b.status;
  }
  const hp = cell(tr, "hp");
  if (hp.dataset.hp !== String(b.hp) || hp.dataset.max !== String(b.max_hp)) {
    hp.dataset.hp = String(b.hp);
    hp.dataset.max = String(b.max_hp);
    hp.querySelector(".fill").style.width = `${b.max_hp ? (100 * b.hp) / b.max_hp : 0}%`;
    setText(hp.querySelector(".text"), `${formatHp(b.hp)} / ${formatHp(b.max_hp)}`);
  }
  setText(cell(tr, "dps"), num(b.dps));
  const sh = cell(tr, "shards");
  setText(sh.querySelector(".ok"), String(b.shards.ok));
  setText(sh.querySelector(".late"), String(b.shards.late));
  setText(sh.querySelector(".crashed"), String(b.shards.crashed));
  setText(sh.querySelector(".left"), String(b.shards.left));
  tr.classList.toggle("health-late", b.shards.late > 0);
  tr.classList.toggle("health-crashed", b.shards.crashed > 0);
  const lag = cell(tr, "lag");
  setText(lag, ms(b.tick_lag_ms));
  lag.classList.toggle("bad", b.tick_lag_ms !== null && b.tick_lag_ms > 1000 && [S.LIVE, S.PAUSED].includes(b.status));
  const version = cell(tr, "version");
  setText(version, b.archive_problem ? `${b.version} (archive stopped)` : String(b.version));
  version.classList.toggle("bad", Boolean(b.archive_problem));
  version.title = b.archive_problem || "";
  setText(cell(tr, "phase"), b.phase || "—");
}

export function startOverview({ wsPath, protocol = readProtocol() }) {
  const S = protocol.status;
  const body = document.querySelector("#bosses tbody");
  const rows = new Map();
  for (const tr of body.querySelectorAll("tr[data-slug]")) rows.set(tr.dataset.slug, tr);
  const state = { messages: 0, socket: null };

  function render(msg) {
    state.messages += 1;
    setText($("beat-age"), ms(msg.beat_age_ms));
    const seen = new Set();
    msg.bosses.forEach((b, i) => {
      seen.add(b.slug);
      let tr = rows.get(b.slug);
      if (!tr) {
        tr = newRow(b);
        rows.set(b.slug, tr);
        body.querySelector(".empty-row")?.remove();
      }
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
      renderRow(tr, b, S);
    });
    for (const [slug, tr] of rows) {
      if (!seen.has(slug)) { tr.remove(); rows.delete(slug); }
    }
    document.body.dataset.overviewServerMs = String(msg.server_ms);
  }

  state.socket = new LiveSocket(wsPath, {
    protocol,
    onMessage: (msg) => { if (msg.type === "overview") render(msg); },
    onStatus: (status, attempt) => setConn($("conn"), status, attempt),
  });
  window.__overview = state;
  return state;
}
