// A WebSocket that reconnects with exponential backoff and jitter.
// Each (re)connection starts with the server's snapshot, so the page resyncs by itself;
// onOpen lets the page re-authenticate or reset per-connection state.

export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

export class LiveSocket {
  constructor(path, { onMessage, onOpen, onClose, onStatus, minDelayMs = 250, maxDelayMs = 8000 } = {}) {
    this.url = wsUrl(path);
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
      // 4401/4403: not allowed; 4404: no such boss or shard. Retrying cannot help.
      if (this.stopped || [4401, 4403, 4404].includes(ev.code)) {
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

  // For tests and the console: drop the connection as a network failure would.
  drop() {
    if (this.ws) this.ws.close(4000, "dropped by client");
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close(1000);
  }
}

export function setConn(el, status, attempt) {
  el.classList.remove("open", "retrying");
  if (status === "open") { el.classList.add("open"); el.textContent = "live"; }
  else if (status === "retrying") { el.classList.add("retrying"); el.textContent = `reconnecting (attempt ${attempt})…`; }
  else if (status === "closed") { el.textContent = `closed (${attempt})`; }
  else el.textContent = "connecting…";
}
