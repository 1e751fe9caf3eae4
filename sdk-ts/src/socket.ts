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
}

type Opener = (url: string, handlers: SocketHandlers) => Promise<Socket>;

let opener: Opener | null = null;

async function nodeOpener(): Promise<Opener> {
  const { default: WebSocket } = await import("ws");
  return (url, handlers) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 2 ** 22 });
      let opened = false;
      ws.on("open", () => {
        opened = true;
        resolve({
          send: (text) => ws.send(text),
          close: (code, reason) => ws.close(code, reason),
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
export async function openSocket(url: string, handlers: SocketHandlers): Promise<Socket> {
  if (opener === null) {
    const global = (globalThis as { WebSocket?: typeof globalThis.WebSocket }).WebSocket;
    opener = global !== undefined ? browserOpener(global) : await nodeOpener();
  }
  return opener(url, handlers);
}
