// The viewer's connections: the /wss stream (reconnecting with backoff and jitter) and REST calls.
// The access token comes from the page URL (/?token=...) or the token form after a 4401.

const BACKOFF_INITIAL_MS = 500;
const BACKOFF_MAX_MS = 30000;
// The server closes a viewer after websocket.idle_timeout (60 s default) without a message.
const PING_EVERY_MS = 20000;

export class ApiError extends Error {
  /** A refused REST call: `code`, `path` and the server's own message. */
  constructor(status, code, message, path) {
    super(message);
    this.status = status;
    this.code = code;
    this.path = path;
  }
}

export class Api {
  constructor(token) {
    this.token = token || "";
  }

  /** JSON in, JSON out; throws ApiError with the server's `{"error": {...}}` text. */
  async call(path, { method = "GET", body } = {}) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (exc) {
      throw new ApiError(0, "unreachable", `the service did not answer (${exc.message})`, "");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(
        response.status,
        err.code || `http_${response.status}`,
        err.message || `${method} ${path}: HTTP ${response.status}`,
        err.path || "",
      );
    }
    return data;
  }
}

/**
 * The position stream. Calls `onFrame(ArrayBuffer)`, `onMessage(object)` and
 * `onState(state, detail)` with state "connecting" | "open" | "closed" | "unauthorized".
 * Reconnects by itself: 0.5 s doubling to 30 s, each delay shortened by up to half at random,
 * so a restarted server is not met by every viewer at once.
 */
export class Stream {
  constructor({ token, onFrame, onMessage, onState }) {
    this.token = token || "";
    this.onFrame = onFrame;
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.delay = BACKOFF_INITIAL_MS;
    this.reconnects = 0;
    this.timer = null;
    this.pinger = null;
    this.stopped = false;
    this.everOpened = false;
    this.nextAttemptAt = null; // performance.now() of the scheduled attempt, while one is
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.token ? `?token=${encodeURIComponent(this.token)}` : "";
    return `${scheme}//${location.host}/wss${query}`;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.nextAttemptAt = null;
    this.onState("connecting", this.reconnects ? `attempt ${this.reconnects + 1}` : "");
    const ws = new WebSocket(this.url());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    // Open once the server has said something: a refused connection (a wrong token) is
    // accepted and closed at once (4401), and calling that "open" started the REST reads.
    let said = false;
    ws.onmessage = (event) => {
      if (!said) {
        said = true;
        this.delay = BACKOFF_INITIAL_MS;
        if (this.everOpened) this.reconnects += 1;
        this.everOpened = true;
        this.onState("open", "");
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.send({ type: "ping", timestamp: Date.now() }), PING_EVERY_MS);
      }
      if (typeof event.data === "string") {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return; // the server sends JSON only; nothing to act on
        }
        this.onMessage(message);
      } else {
        this.onFrame(event.data);
      }
    };
    ws.onclose = (event) => {
      clearInterval(this.pinger);
      if (this.ws !== ws) return;
      this.ws = null;
      if (event.code === 4401) {
        this.onState("unauthorized", event.reason || "missing or wrong token");
        return; // waits for a token: retrying would fail the same way
      }
      const reason = event.reason ? `${event.code} ${event.reason}` : `code ${event.code}`;
      this.onState("closed", reason);
      if (!this.stopped) this.schedule();
    };
  }

  schedule() {
    const wait = this.delay * (0.5 + 0.5 * Math.random());
    this.delay = Math.min(this.delay * 2, BACKOFF_MAX_MS);
    this.nextAttemptAt = performance.now() + wait; // for a countdown
    this.onState("closed", `reconnecting in ${Math.ceil(wait / 1000)} s`); // as the countdown
    this.timer = setTimeout(() => this.connect(), wait);
  }

  /** Seconds until the next attempt while one is scheduled, else null. */
  secondsToNextAttempt() {
    if (this.nextAttemptAt === null) return null;
    return Math.max(0, (this.nextAttemptAt - performance.now()) / 1000);
  }

  /** The user's "retry now": the scheduled attempt, made at once. */
  reconnectNow() {
    if (this.nextAttemptAt === null || this.stopped) return;
    this.connect();
  }

  /** Connect again now with a new token (after the token form). */
  retry(token) {
    this.token = token;
    this.delay = BACKOFF_INITIAL_MS;
    if (this.ws) this.ws.close();
    this.connect();
  }

  send(data) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(typeof data === "object" && !(data instanceof ArrayBuffer) ? JSON.stringify(data) : data);
    return true;
  }
}
