// Player page: state from /ws/bosses/<slug>/, attacks over the shard gateway /ws/shards/<key>/.
// A click predicts at once (the bar drops by the expected damage), the ack corrects it to
// the real damage, and every state message is the truth the bar eases to (hp.js).
// The shard socket carries the visitor's identity in its cookies (the session of a signed-in
// user, or the signed guest cookie the page set): `cfg.identity` null means neither (a boss
// that admits no guests), so the page only watches and asks to sign in.
import { HpModel, drawBar, formatHp } from "./hp.js";
import { LiveSocket, setConn } from "./live.js";
import { isEnded, readProtocol } from "./protocol.js";

const $ = (id) => document.getElementById(id);

// `protocol`: the constants the server rendered into the page (statuses, error codes, closes).
export function startPlayer(cfg, protocol = readProtocol()) {
  const S = protocol.status;
  const E = protocol.errors;
  const model = new HpModel({ hp: cfg.max_hp, maxHp: cfg.max_hp, protocol, version: -1 });
  const stats = { hits: 0, damage: 0, refused: 0 };
  const sent = new Map(); // attack id -> model hit id
  let nextAttack = 1;
  let resyncNext = true; // the first state of each connection is its snapshot
  let stateOpen = false;
  let welcomed = false;
  // Client-side token bucket at the boss's rate, so a held key does not earn refusals.
  const bucket = { tokens: cfg.attacks_per_second, at: performance.now() };

  function canAttack() {
    return welcomed && stateOpen && model.status === S.LIVE;
  }

  function refreshButton() {
    $("attack").disabled = !canAttack();
  }

  function banner(kind, text) {
    const b = $("banner");
    b.className = `banner show ${kind}`;
    b.textContent = text;
  }

  // The fight is over: the end events (`defeated`, `expired`) are named after the status.
  function showEnd(status) {
    if (status === S.DEFEATED) banner("win", `Victory! ${cfg.name} is defeated.`);
    else banner("lose", `${cfg.name} escaped: the fight is over.`);
  }

  function showState(msg) {
    $("version").textContent = msg.version;
    $("phase").textContent = msg.phase ? `Phase: ${msg.phase}` : "";
    if (isEnded(protocol, msg.status)) showEnd(msg.status);
    else if (msg.status === S.PAUSED) banner("info", "The fight is paused by the operators.");
    else if (msg.status === S.DRAFT) banner("info", "The fight has not started yet.");
    else $("banner").className = "banner";
    refreshButton();
  }

  function onState(msg) {
    const force = resyncNext;
    resyncNext = false;
    if (model.truth(msg, performance.now(), { force })) showState(msg);
  }

  function logHit(text, mine) {
    const li = document.createElement("li");
    li.textContent = text;
    if (mine) li.className = "mine";
    const list = $("hits");
    list.prepend(li);
    while (list.children.length > 6) list.lastChild.remove();
  }

  function attack() {
    if (!canAttack()) return;
    const now = performance.now();
    bucket.tokens = Math.min(cfg.attacks_per_second, bucket.tokens + ((now - bucket.at) / 1000) * cfg.attacks_per_second);
    bucket.at = now;
    if (bucket.tokens < 1) return;
    bucket.tokens -= 1;
    const id = nextAttack++;
    const hitId = model.predict(cfg.predicted_damage, now);
    sent.set(id, hitId);
    if (!shard || !shard.send({ type: "attack", boss: cfg.boss, id })) {
      model.reject(hitId);
      sent.delete(id);
    }
  }

  function onShardMessage(msg) {
    if (msg.type === "welcome") { welcomed = true; refreshButton(); return; }
    if (msg.type === "attack_ack") {
      const hitId = sent.get(msg.id);
      sent.delete(msg.id);
      if (hitId !== undefined) model.ack(hitId, msg.damage, performance.now());
      stats.hits += 1;
      stats.damage += msg.damage;
      $("my-hits").textContent = formatHp(stats.hits);
      $("my-damage").textContent = formatHp(stats.damage);
      logHit(`−${formatHp(msg.damage)}`, true);
      return;
    }
    if (msg.type === "error") {
      const hitId = sent.get(msg.id);
      if (hitId !== undefined) { model.reject(hitId); sent.delete(msg.id); }
      stats.refused += 1;
      $("my-refused").textContent = formatHp(stats.refused);
      logHit(msg.code === E.RATE_LIMITED ? "too fast: hit refused" : `refused: ${msg.detail}`, false);
    }
  }

  const state = new LiveSocket(cfg.state_path, {
    protocol,
    onOpen: () => { resyncNext = true; stateOpen = true; refreshButton(); },
    onClose: () => { stateOpen = false; refreshButton(); },
    onMessage: (msg) => {
      if (msg.type === "state") onState(msg);
      else if (isEnded(protocol, msg.type)) showEnd(msg.type);
    },
    onStatus: (st, attempt) => setConn($("conn"), st, attempt),
  });
  const shard = cfg.identity === null ? null : new LiveSocket(cfg.shard_path, {
    protocol,
    onOpen: () => { welcomed = false; },
    onClose: () => {
      welcomed = false;
      sent.clear(); // unanswered hits expire in the model; the truth corrects the bar
      refreshButton();
    },
    onMessage: onShardMessage,
  });

  $("attack").addEventListener("click", attack);
  // Space or A attacks (a held key repeats; the token bucket above paces it).
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === " " || ev.key === "a" || ev.key === "A") {
      ev.preventDefault();
      attack();
    }
  });

  // Paint something at once from the HTTP snapshot (the socket's snapshot follows).
  fetch(cfg.snapshot_url).then((r) => r.json()).then((msg) => {
    if (model.version < 0 && model.truth(msg, performance.now())) showState(msg);
  }).catch(() => {});

  const frame = (now) => {
    const shown = model.frame(now);
    const bar = $("hpbar");
    drawBar(bar, model, shown);
    bar.dataset.pending = String(model.pending.size);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  window.__play = { model, state, shard, attack, protocol };
}
