// What the character is doing, derived from what the page knows: "idle", "listening",
// "thinking", "speaking", "interrupted" (shown for a moment after a reply is cut short), or
// "offline". Each change is written to #voz-app[data-presence], announced in the live
// #presence label, and recorded in `window.vozStates` ({state, t}) for tests and tools.

const INTERRUPTED_MS = 1500;

export class Presence {
  /** @param {{app: HTMLElement, label: HTMLElement, strings: Record<string, string>, name: () => string}} options */
  constructor({ app, label, strings, name }) {
    Object.assign(this, { app, label, strings, name });
    this.state = "";
    this.interruptedUntil = 0;
    this.timer = null;
    window.vozStates = [];
  }

  /** A reply was cut short: show "interrupted" for a moment, whatever comes next. */
  interrupted(inputs) {
    this.interruptedUntil = performance.now() + INTERRUPTED_MS;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.update(this.lastInputs), INTERRUPTED_MS + 10);
    this.update(inputs);
  }

  /**
   * @param {{chosen: boolean, connected: boolean, speaking: boolean, awaitingReply: boolean,
   *          listening: boolean}} inputs
   */
  update(inputs) {
    this.lastInputs = inputs;
    let state = "idle";
    if (!inputs.chosen) state = "idle";
    else if (performance.now() < this.interruptedUntil) state = "interrupted";
    else if (inputs.speaking) state = "speaking";
    else if (inputs.awaitingReply) state = "thinking";
    else if (!inputs.connected) state = "offline";
    else if (inputs.listening) state = "listening";
    if (state === this.state) return;
    this.state = state;
    this.app.dataset.presence = state;
    if (inputs.chosen) this.label.textContent = this.strings[state].replace("{name}", this.name());
    window.vozStates.push({ state, t: performance.now() });
  }
}
