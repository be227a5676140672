// The voice-chat page: the character at the centre with what it is doing, the conversation,
// one talk control, typing; settings, memory and history in the side panel (panel.js).
//
// For tests and tools the page exposes `window.vozEvents` (playback events), `window.vozStates`
// (the character's states) and data attributes on #voz-app: `data-connection`, `data-session`,
// `data-conversation`, `data-presence`, `data-mode`, `data-input-level` (the loudest chunk's
// RMS, 0–1), `data-frames-sent`.

import { setUpPanel } from "./panel.js";
import { Player } from "./player.js";
import { Presence } from "./presence.js";
import {
  $,
  addMessage,
  app,
  CONFIG,
  fmt,
  hideBanner,
  markInterrupted,
  replyItem,
  setConversation,
  showBanner,
  showError,
  showLatency,
  state,
  T,
} from "./page.js";
import { setUpTalking } from "./talk.js";
import { VoiceConnection } from "./voice.js";
import * as rest from "./api.js";

window.vozEvents = [];
let voice = null;

// --- The character's state --------------------------------------------------------------------

const presence = new Presence({
  app,
  label: $("presence"),
  strings: T.state,
  name: () => state.instance?.character_name || "",
});

const inputs = () => ({
  chosen: Boolean(state.instance),
  connected: app.dataset.connection === "open",
  speaking: player.busy,
  awaitingReply: state.awaitingReply,
  listening: talking.listening,
});
const refresh = () => {
  $("stop").disabled = !(state.responseId || player.busy);
  presence.update(inputs());
};

// --- Audio out --------------------------------------------------------------------------------

const player = new Player((event) => {
  window.vozEvents.push({ ...event, t: performance.now() });
  refresh();
});

function stopReply({ cancel }) {
  const responseId = state.responseId;
  if (cancel && responseId) voice?.send({ type: "response.cancel" });
  const wasPlaying = player.stop(responseId);
  if (wasPlaying || responseId) presence.interrupted(inputs());
  refresh();
}

// --- Talking ----------------------------------------------------------------------------------

const talking = setUpTalking({
  voice: () => voice,
  interruptReply: () => {
    if (player.busy || state.responseId) stopReply({ cancel: true });
  },
  changed: () => refresh(),
  modeChanged: () => voice?.reopen(), // turn detection is chosen at session.start
});

$("stop").addEventListener("click", () => stopReply({ cancel: true }));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("stop").disabled) stopReply({ cancel: true });
});

// --- The voice connection ---------------------------------------------------------------------

let countdown = null;

function setConnection(status, detail = {}) {
  app.dataset.connection = status;
  clearInterval(countdown);
  const labels = {
    connecting: T.connecting,
    open: T.connected,
    reconnecting: T.reconnecting_now,
    closed: T.closed,
    unauthorized: T.unauthorized,
  };
  $("connection-status").textContent = labels[status] || status;
  if (status === "open") hideBanner("connection", "input");
  if (status === "reconnecting" && detail.delayMs) {
    player.stop(state.responseId);
    state.responseId = null;
    state.awaitingReply = false;
    const until = performance.now() + detail.delayMs;
    const tick = () => {
      const seconds = Math.max(1, Math.ceil((until - performance.now()) / 1000));
      const text = fmt(T.reconnecting, { seconds });
      $("connection-status").textContent = text;
      if ($("banner").hidden || $("banner").dataset.kind === "connection") {
        showBanner(text, "connection");
      }
    };
    tick();
    countdown = setInterval(tick, 250);
  }
  if (status === "unauthorized") showBanner(T.unauthorized, "connection");
  refresh();
}

function connect(instance) {
  voice?.close();
  player.stop(state.responseId);
  state.responseId = null;
  state.awaitingReply = false;
  state.voiceAvailable = true;
  voice = new VoiceConnection({
    url: `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${CONFIG.wsPath}`,
    sessionStart: () => ({
      instance: instance.name,
      language: instance.language,
      input_audio: { format: "pcm16", sample_rate: 16000 },
      output_audio: { format: "wav" },
      // Push-to-talk: only input_audio.commit (the release) ends a turn.
      turn_detection: app.dataset.mode === "ptt" ? null : { type: "server_vad" },
      ...(state.conversationId ? { conversation: state.conversationId } : {}),
    }),
    onState: setConnection,
    onEvent: onServerEvent,
    onAudio: (audio, meta) => player.enqueue(audio, meta),
  });
  voice.connect();
}

/** The conversation a stored message belongs to (session.started has none before the first turn). */
async function findConversation(messageId) {
  if (!messageId || !state.instance) return;
  const conversations = await rest.listConversations(state.instance.id);
  for (const conversation of conversations.items.slice(0, 3)) {
    const messages = await rest.listMessages(conversation.id);
    if (messages.items.some((message) => message.id === messageId)) {
      setConversation(conversation.id);
      return;
    }
  }
}

function onServerEvent(event) {
  if (event.conversation_id) setConversation(event.conversation_id);
  switch (event.type) {
    case "session.started":
      app.dataset.session = event.session_id || "";
      // With voice activity detection only speech_started interrupts ("mm" does not).
      state.bargeInOnPartial = event.interruption?.by === "partial";
      if (event.stt_engine === null) voiceUnavailable();
      break;
    case "transcript.partial": {
      const text = (event.text || "").trim();
      $("partial").textContent = text;
      if (text && state.bargeInOnPartial && player.busy) stopReply({ cancel: false });
      break;
    }
    case "transcript.ignored": // too short to interrupt ("mm"): the reply goes on
      $("partial").textContent = "";
      break;
    case "input_audio.speech_started": // speech long enough to interrupt: hold the reply
      if (player.busy) player.pause(); // words cut it (response.done), none resume it
      break;
    case "response.resumed": // the speech had no words: a false interruption
      player.resume();
      break;
    case "transcript.final":
      $("partial").textContent = "";
      // A new turn ends the reply before it, even one the server had finished sending that was
      // paused here (input_audio.speech_started) while still playing.
      if (player.busy || player.paused) stopReply({ cancel: false });
      state.lastUserMessageId = event.message_id || state.lastUserMessageId;
      if (event.text) {
        addMessage("user", event.text, { messageId: event.message_id || "" });
        state.awaitingReply = true;
      }
      break;
    case "response.started":
      state.responseId = event.response_id;
      state.awaitingReply = true;
      replyItem(event.response_id);
      break;
    case "response.text.delta": {
      const item = replyItem(event.response_id);
      item.querySelector(".text").textContent += event.delta || "";
      item.dataset.deltas = String(Number(item.dataset.deltas) + 1);
      break;
    }
    case "response.done":
      responseDone(event);
      break;
    case "metrics":
      showLatency(event);
      break;
    case "error":
      if (event.code === "stt_failed" && app.dataset.session === "") voiceUnavailable(event);
      else showError(event, event.fatal ? "connection" : "server");
      if (["llm_failed", "text_too_long", "rate_limited", "turn_in_progress"].includes(event.code)) {
        state.awaitingReply = Boolean(state.responseId);
      }
      break;
    default:
      break;
  }
  refresh();
}

function responseDone(event) {
  const item = replyItem(event.response_id);
  const text = item.querySelector(".text");
  // Interrupted: show what was heard (what is stored), not everything that was generated.
  if (event.text && (event.interrupted || !text.textContent)) text.textContent = event.text;
  item.dataset.state = "done";
  item.dataset.messageId = event.message_id || "";
  if (event.interrupted) {
    player.stop(event.response_id);
    markInterrupted(item);
    presence.interrupted(inputs());
  }
  if (state.responseId === event.response_id) state.responseId = null;
  state.awaitingReply = false;
  const known = state.conversationId ? Promise.resolve() : findConversation(event.message_id || state.lastUserMessageId);
  known.then(panel.refreshHistory).catch((error) => showError(error, "load"));
}

/** No recogniser for this language here: say so calmly (not as an error) and offer typing. */
function voiceUnavailable(event) {
  state.voiceAvailable = false;
  $("notice").textContent = T.voice_unavailable;
  if (event?.message) $("notice").title = event.message;
  talking.render();
}

// --- Typing -----------------------------------------------------------------------------------

$("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text-input").value.trim();
  if (!text) return;
  if (!voice?.send({ type: "input_text", text }, { reconnect: true })) {
    showBanner(state.instance ? T.not_connected : T.pick_instance, "input");
    return;
  }
  hideBanner("input");
  if (player.busy) stopReply({ cancel: false });
  state.awaitingReply = true;
  $("text-input").value = "";
  refresh();
});

// --- Instance and conversation ----------------------------------------------------------------

function showCharacter(instance) {
  $("character-name").textContent = instance ? instance.character_name : T.talk_to;
  $("instance-label").textContent = instance ? instance.name : "";
  $("avatar-initial").textContent = instance ? instance.character_name.trim().charAt(0).toUpperCase() : "?";
  if (!instance) $("presence").textContent = T.pick_instance;
}

function resetConversation(id = null) {
  state.replies.clear();
  $("log").replaceChildren();
  $("partial").textContent = "";
  $("notice").textContent = "";
  setConversation(id);
}

const panel = setUpPanel({
  selectInstance(instance) {
    state.instance = instance;
    resetConversation();
    showCharacter(instance);
    if (instance) connect(instance);
    else {
      voice?.close();
      voice = null;
    }
    refresh();
  },
  continueConversation(id, messages, title) {
    if (!state.instance) return;
    voice?.close(); // ends the current conversation (its memory is consolidated)
    resetConversation(id);
    for (const message of messages) {
      addMessage(message.role, message.text, { messageId: message.id, interrupted: message.interrupted });
    }
    $("notice").textContent = fmt(T.continued, { title });
    connect(state.instance);
    panel.refreshHistory();
  },
  newConversation() {
    if (!state.instance) return;
    voice?.close();
    resetConversation();
    connect(state.instance);
    panel.refreshHistory();
  },
});

window.addEventListener("beforeunload", () => voice?.close());
showCharacter(null);
panel
  .loadInstances(new URLSearchParams(location.search).get("instance"))
  .catch((error) => showError(error, "load"));
