// The talk control: one large button. Hands-free, it turns the microphone on and off and the
// server decides when you finished (turn_detection server_vad). Push-to-talk, it is held (or the
// space bar is) while you speak; releasing it sends `input_audio.commit`, the only end of a turn
// (turn_detection null). Audio frames go out only in hands-free or while held.

import { Microphone } from "./mic.js";
import { $, app, CONFIG, hideBanner, showBanner, state, T } from "./page.js";

/**
 * @param {{voice: () => import("./voice.js").VoiceConnection | null, interruptReply: () => void,
 *          changed: () => void, modeChanged: (mode: string) => void}} hooks
 */
export function setUpTalking({ voice, interruptReply, changed, modeChanged }) {
  const talk = $("talk");
  const mic = new Microphone({
    raw: CONFIG.rawMic,
    onLevel: (level) => {
      state.peakLevel = Math.max(state.peakLevel, level);
      app.dataset.inputLevel = state.peakLevel.toFixed(4);
      const percent = Math.min(100, Math.round(Math.sqrt(level) * 140)); // perceptual-ish scale
      $("level-bar").style.width = `${percent}%`;
      $("level-meter").setAttribute("aria-valuenow", String(percent));
      app.style.setProperty("--level", (percent / 100).toFixed(2));
    },
    onChunk: (pcm) => {
      const sending = app.dataset.mode === "handsfree" || state.talking;
      if (sending && voice()?.sendAudio(pcm)) {
        state.framesSent += 1;
        app.dataset.framesSent = String(state.framesSent);
      }
    },
  });

  async function startMic() {
    try {
      await mic.start();
      hideBanner("mic");
    } catch (error) {
      const name = error?.name;
      if (name === "NotAllowedError" || name === "SecurityError") showBanner(T.mic_denied, "mic");
      else if (name === "NotFoundError") showBanner(T.mic_missing, "mic");
      else showBanner(T.mic_failed, "mic", `${name || "Error"}: ${error?.message || error}`);
    }
    render();
  }

  function render() {
    const ptt = app.dataset.mode === "ptt";
    const pressed = ptt ? state.talking : mic.active;
    talk.setAttribute("aria-pressed", String(pressed));
    talk.textContent = ptt ? (state.talking ? T.ptt_release : T.ptt_hold) : mic.active ? T.mic_stop : T.mic_start;
    talk.disabled = !state.voiceAvailable;
    changed();
  }

  function setMode(mode) {
    if (app.dataset.mode === mode) return;
    if (state.talking) pttUp();
    app.dataset.mode = mode;
    if (mode === "ptt" && !mic.active) startMic(); // opened now, sent only while held
    render();
    modeChanged(mode);
  }

  function pttDown() {
    if (state.talking || app.dataset.mode !== "ptt" || !state.voiceAvailable) return;
    interruptReply(); // talking over the reply stops it
    state.talking = true;
    if (!mic.active) startMic();
    render();
  }

  function pttUp() {
    if (!state.talking) return;
    state.talking = false;
    voice()?.send({ type: "input_audio.commit" });
    render();
  }

  talk.addEventListener("click", async () => {
    if (app.dataset.mode === "ptt") return; // held, not clicked
    if (mic.active) {
      mic.stop();
      render();
    } else {
      await startMic();
    }
  });
  talk.addEventListener("pointerdown", (event) => {
    if (app.dataset.mode !== "ptt") return;
    event.preventDefault();
    talk.setPointerCapture?.(event.pointerId);
    pttDown();
  });
  talk.addEventListener("pointerup", pttUp);
  talk.addEventListener("pointercancel", pttUp);

  document.querySelectorAll('input[name="mode"]').forEach((radio) =>
    radio.addEventListener("change", () => radio.checked && setMode(radio.value)),
  );

  const typing = (target) =>
    target.closest("input:not([type=radio]), textarea, select, [contenteditable], button, summary, a");
  document.addEventListener("keydown", (event) => {
    if (event.code !== "Space" || app.dataset.mode !== "ptt") return;
    if (typing(event.target) && event.target !== talk) return;
    event.preventDefault();
    if (!event.repeat) pttDown();
  });
  document.addEventListener("keyup", (event) => {
    if (event.code === "Space" && state.talking) {
      event.preventDefault();
      pttUp();
    }
  });

  return {
    render,
    get listening() {
      return app.dataset.mode === "ptt" ? state.talking : mic.active;
    },
  };
}
