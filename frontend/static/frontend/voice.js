// The voice WebSocket (protocol voz.v1, docs/protocol.md): session start, events, binary audio,
// and automatic reconnection with exponential back-off when the connection drops.

// Close codes (docs/protocol.md, "Close codes").
const CLOSE_NORMAL = 1000;
const CLOSE_UNAUTHORIZED = 4401;
// Only these retry, with back-off: the connection dropped without a close frame (1006), the
// server failed (4500) or cannot serve right now (4503), the page read too slowly (4429), the
// user's other tabs hold every session place (4409: one frees when another tab closes); and,
// from a proxy in front, going away (1001) or the standard server error / try later (1011-1013).
// Anything else stops until the user acts again: normal (1000), a bad origin (4403), an unknown
// instance or path (4404), idle or too long (4408), a message too big (1009).
const CLOSE_RETRY = new Set([1001, 1006, 1011, 1012, 1013, 4409, 4429, 4500, 4503]);
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30000;

export class VoiceConnection {
  /**
   * @param {{url: string, sessionStart: () => object,
   *          onEvent: (event: object) => void, onAudio: (audio: ArrayBuffer, meta: object) => void,
   *          onState: (state: string, detail?: object) => void}} options
   * States: "connecting", "open" (session started), "reconnecting", "closed", "unauthorized".
   */
  constructor({ url, sessionStart, onEvent, onAudio, onState }) {
    Object.assign(this, { url, sessionStart, onEvent, onAudio, onState });
    this.socket = null;
    this.started = false;
    this.pendingAudio = null; // the `response.audio` event whose binary frame comes next
    this.attempt = 0;
    this.retryTimer = null;
    this.wanted = false;
    this.queued = []; // events to send once a reopened session has started
  }

  connect() {
    this.wanted = true;
    clearTimeout(this.retryTimer);
    this.open();
  }

  open() {
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting", { attempt: this.attempt });
    const socket = new WebSocket(this.url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.started = false;
    this.pendingAudio = null;
    socket.onopen = () => socket.send(JSON.stringify({ type: "session.start", ...this.sessionStart() }));
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      if (typeof message.data !== "string") {
        const meta = this.pendingAudio;
        this.pendingAudio = null;
        if (meta) this.onAudio(message.data, meta);
        return;
      }
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.type === "session.started") {
        this.started = true;
        this.attempt = 0;
        this.onState("open");
        this.onEvent(event);
        for (const queued of this.queued) socket.send(JSON.stringify(queued));
        this.queued = [];
        return;
      } else if (event.type === "response.audio") {
        this.pendingAudio = event;
      }
      this.onEvent(event);
    };
    socket.onclose = (close) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.started = false;
      if (close.code === CLOSE_UNAUTHORIZED) {
        this.wanted = false;
        this.onState("unauthorized", { code: close.code });
      } else if (!this.wanted || !CLOSE_RETRY.has(close.code)) {
        this.wanted = false;
        this.onState("closed", { code: close.code });
      } else {
        this.scheduleRetry(close.code);
      }
    };
  }

  scheduleRetry(code) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4)); // jitter: clients don't stampede
    this.attempt += 1;
    this.onState("reconnecting", { attempt: this.attempt, delayMs: delay, code });
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  /**
   * A new session on the same conversation (e.g. after a setting that session.start carries
   * changed): the old socket closes without `session.end`, so the conversation stays open.
   */
  reopen() {
    if (!this.wanted) return;
    const socket = this.socket;
    this.socket = null;
    this.started = false;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(CLOSE_NORMAL);
    this.attempt = 0;
    this.connect();
  }

  /** Close for good (no reconnect). */
  close() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    this.socket = null;
    this.started = false;
    if (socket && socket.readyState <= WebSocket.OPEN) {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "session.end" }));
      socket.close(CLOSE_NORMAL);
    }
    this.onState("closed", { code: CLOSE_NORMAL });
  }

  get ready() {
    return this.started && this.socket?.readyState === WebSocket.OPEN;
  }

  /**
   * Sends now if the session is open. With `reconnect`, a closed session (e.g. after the idle
   * timeout) is opened again and the event sent once it has started.
   */
  send(event, { reconnect = false } = {}) {
    if (this.ready) {
      this.socket.send(JSON.stringify(event));
      return true;
    }
    if (this.wanted || !reconnect) return false;
    this.queued.push(event);
    this.connect();
    return true;
  }

  sendAudio(pcm) {
    if (!this.ready) return false;
    this.socket.send(pcm.buffer);
    return true;
  }
}
