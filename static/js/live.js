// A WebSocket that reconnects with exponential backoff and jitter.
// Each (re)connection starts with the server's snapshot, so the page resyncs by itself;
// onOpen lets the page re-authenticate or reset per-connection state.
// Which closes are final comes from the protocol the server rendered into the page
// (protocol.js), never from codes of its own.
import { isPermanentClose, readProtocol } from "./protocol.js";

export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

export class LiveSocket {
  constructor(path, { protocol = readProtocol(), onMessage, onOpen, onClose, onStatus, minDelayMs = 250, maxDelayMs = 8000 } = {}) {
    this.url = wsUrl(path);
    this.protocol = protocol;
    this.onMessage = onMessage || (() => {});
    this.onOpen = onOpen || (() => {});
    this.onClose = onClose || (() => {});
    this.onStatus = onStatus || (() => {});
    this.minDelayMs = minDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.attempt = 0;
    this.stopped = false;
    this.ws = null;
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    this.onStatus(this.attempt ? "retrying" : "connecting", this.attempt);
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.onStatus("open", 0);
      this.onOpen(this);
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this.onMessage(msg, this);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.onClose(ev, this);
      // Not allowed, or no such boss or shard: the same request gets the same answer.
      if (this.stopped || isPermanentClose(this.protocol, ev.code)) {
        this.onStatus("closed", ev.code);
        return;
      }
      this.attempt += 1;
      const base = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** (this.attempt - 1));
      const delay = base / 2 + Math.random() * (base / 2);
      this.onStatus("retrying", this.attempt, delay);
      setTimeout(() => this.connect(), delay);
    };
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  // For tests and the console: drop the connection as a network failure would. No close
  // code is given, so the close is never one the protocol calls permanent: it reconnects.
  drop() {
    if (this.ws) this.ws.close();
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close(this.protocol.close.NORMAL);
  }
}

export function setConn(el, status, attempt) {
  el.classList.remove("open", "retrying");
  if (status === "open") { el.classList.add("open"); el.textContent = "live"; }
  else if (status === "retrying") { el.classList.add("retrying"); el.textContent = `reconnecting (attempt ${attempt})…`; }
  else if (status === "closed") { el.textContent = `closed (${attempt})`; }
  else el.textContent = "connecting…";
}
