/**
 * One small WebSocket surface over the browser's WebSocket (when there is a global one) and
 * the `ws` package (Node 20 has no stable global WebSocket).
 */

export interface Socket {
  send(text: string): void;
  close(code?: number, reason?: string): void;
  /** Drop the connection as a network failure would (no close frame). */
  abort(): void;
  readonly open: boolean;
}

export interface SocketHandlers {
  onMessage(text: string): void;
  onClose(code: number, reason: string): void;
  /** A close this side started that the platform did not answer within `closeTimeoutMs`. */
  onUnansweredClose?(): void;
}

/** Liveness (Node's `ws` only: a browser's WebSocket has no ping and keeps its own timers). */
export interface SocketOptions {
  /** A ping every this many ms; a link that has not answered the previous one is dropped. */
  pingIntervalMs?: number | null;
  /** A close handshake not answered within this is given up (the connection dropped). */
  closeTimeoutMs?: number;
}

type Opener = (url: string, handlers: SocketHandlers, options: SocketOptions) => Promise<Socket>;

let opener: Opener | null = null;

async function nodeOpener(): Promise<Opener> {
  const { default: WebSocket } = await import("ws");
  return (url, handlers, options) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 2 ** 22 });
      let opened = false;
      let awaitingPong = false;
      let pinger: ReturnType<typeof setInterval> | null = null;
      let closer: ReturnType<typeof setTimeout> | null = null;
      const stopTimers = () => {
        if (pinger !== null) clearInterval(pinger);
        if (closer !== null) clearTimeout(closer);
      };
      ws.on("pong", () => (awaitingPong = false));
      ws.on("open", () => {
        opened = true;
        const every = options.pingIntervalMs;
        if (every) {
          pinger = setInterval(() => {
            if (awaitingPong) {
              ws.terminate(); // no pong for a whole interval: the link is dead, leave it now
              return;
            }
            awaitingPong = true;
            ws.ping();
          }, every);
        }
        resolve({
          send: (text) => ws.send(text),
          close: (code, reason) => {
            ws.close(code, reason);
            closer ??= setTimeout(() => {
              if (ws.readyState !== WebSocket.CLOSED) {
                handlers.onUnansweredClose?.();
                ws.terminate();
              }
            }, options.closeTimeoutMs ?? 1000);
          },
          abort: () => ws.terminate(),
          get open() {
            return ws.readyState === WebSocket.OPEN;
          },
        });
      });
      ws.on("message", (data) => handlers.onMessage(data.toString()));
      ws.on("error", (err) => {
        if (!opened) reject(err);
      });
      ws.on("close", (code, reason) => {
        stopTimers();
        if (opened) handlers.onClose(code, reason.toString());
      });
    });
}

function browserOpener(Ctor: typeof globalThis.WebSocket): Opener {
  return (url, handlers) =>
    new Promise((resolve, reject) => {
      const ws = new Ctor(url);
      let opened = false;
      ws.onopen = () => {
        opened = true;
        resolve({
          send: (text) => ws.send(text),
          close: (code, reason) => ws.close(code, reason),
          abort: () => ws.close(), // a page cannot drop a TCP connection; closing is the nearest
          get open() {
            return ws.readyState === Ctor.OPEN;
          },
        });
      };
      ws.onmessage = (event) => handlers.onMessage(String(event.data));
      ws.onerror = () => {
        if (!opened) reject(new Error(`WebSocket to ${url} failed`));
      };
      ws.onclose = (event) => {
        if (opened) handlers.onClose(event.code, event.reason);
      };
    });
}

/** Open `url`; the browser's WebSocket when there is one, else the `ws` package. */
export async function openSocket(url: string, handlers: SocketHandlers, options: SocketOptions = {}): Promise<Socket> {
  if (opener === null) {
    const global = (globalThis as { WebSocket?: typeof globalThis.WebSocket }).WebSocket;
    opener = global !== undefined ? browserOpener(global) : await nodeOpener();
  }
  return opener(url, handlers, options);
}
