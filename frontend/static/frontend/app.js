// The voice-chat page: instance picker, memory, history, typing, microphone and reply audio.
//
// For tests and tools the page exposes `window.vozEvents` (playback events) and data attributes
// on #voz-app: `data-connection`, `data-session`, `data-input-level` (the loudest chunk's RMS,
// 0–1), `data-frames-sent`, `data-mode`.

import * as rest from "./api.js";
import { Microphone } from "./mic.js";
import { Player } from "./player.js";
import { VoiceConnection } from "./voice.js";

const T = JSON.parse(document.getElementById("voz-strings").textContent);
const CONFIG = JSON.parse(document.getElementById("voz-config").textContent);
const $ = (id) => document.getElementById(id);
const app = $("voz-app");

const fmt = (text, values = {}) => text.replace(/\{(\w+)\}/g, (_, key) => values[key] ?? "");

window.vozEvents = [];

const state = {
  instances: [],
  instance: null,
  conversationId: null, // continued on reconnect
  responseId: null, // the response in progress (between response.started and response.done)
  lastUserMessageId: null, // finds the conversation when the server does not name it
  replies: new Map(), // response_id → its <li>
  talking: false, // push-to-talk button held
  peakLevel: 0,
  framesSent: 0,
};

// --- Banner -----------------------------------------------------------------------------------

function showBanner(text, kind = "error") {
  $("banner-text").textContent = text;
  $("banner").dataset.kind = kind;
  $("banner").hidden = false;
}

function hideBanner(kind) {
  if (!kind || $("banner").dataset.kind === kind) $("banner").hidden = true;
}

$("banner-close").addEventListener("click", () => hideBanner());

// --- Conversation log -------------------------------------------------------------------------

function addMessage(role, text, { responseId, interrupted } = {}) {
  const item = document.createElement("li");
  item.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? T.you : state.instance?.character_name || "";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(who, body);
  if (responseId) item.dataset.responseId = responseId;
  if (interrupted) markInterrupted(item);
  $("log").append(item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

function markInterrupted(item) {
  item.dataset.state = "interrupted";
  if (item.querySelector(".tag")) return;
  const tag = document.createElement("small");
  tag.className = "tag";
  tag.textContent = T.interrupted;
  item.append(tag);
}

function replyItem(responseId) {
  let item = state.replies.get(responseId);
  if (!item) {
    item = addMessage("assistant", "", { responseId });
    item.dataset.state = "streaming";
    item.dataset.deltas = "0";
    state.replies.set(responseId, item);
  }
  return item;
}

// --- Audio out --------------------------------------------------------------------------------

const player = new Player((event) => {
  window.vozEvents.push({ ...event, t: performance.now() });
  updateStopButton();
});

function updateStopButton() {
  $("stop").disabled = !(state.responseId || player.busy);
}

function stopReply({ cancel }) {
  const responseId = state.responseId;
  if (cancel && responseId) voice?.send({ type: "response.cancel" });
  player.stop(responseId);
  updateStopButton();
}

// --- Voice connection -------------------------------------------------------------------------

let voice = null;

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${CONFIG.wsPath}`;
}

function setConnection(status, detail = {}) {
  app.dataset.connection = status;
  const labels = {
    connecting: T.connecting,
    open: T.connected,
    reconnecting: detail.delayMs ? fmt(T.reconnecting, { seconds: Math.ceil(detail.delayMs / 1000) }) : T.reconnecting_now,
    closed: T.closed,
    unauthorized: T.unauthorized,
  };
  $("connection-status").textContent = labels[status] || status;
  if (status === "open") hideBanner("connection");
  if (status === "reconnecting" && detail.delayMs) {
    player.stop(state.responseId);
    state.responseId = null;
    updateStopButton();
    showBanner(labels.reconnecting, "connection");
  }
  if (status === "unauthorized") showBanner(T.unauthorized, "connection");
}

function connect(instance) {
  voice?.close();
  player.stop(state.responseId);
  state.responseId = null;
  setConversation(null);
  voice = new VoiceConnection({
    url: wsUrl(),
    sessionStart: () => ({
      instance: instance.name,
      language: instance.language,
      input_audio: { format: "pcm16", sample_rate: 16000 },
      output_audio: { format: "wav" },
      ...(state.conversationId ? { conversation: state.conversationId } : {}),
    }),
    onState: setConnection,
    onEvent: onServerEvent,
    onAudio: (audio, meta) => player.enqueue(audio, meta),
  });
  voice.connect();
}

function setConversation(id) {
  state.conversationId = id || null;
  app.dataset.conversation = id || "";
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
      break;
    case "transcript.partial": {
      const text = (event.text || "").trim();
      $("partial").textContent = text;
      if (text && player.busy) stopReply({ cancel: false }); // barge-in: the server stops too
      break;
    }
    case "transcript.final":
      $("partial").textContent = "";
      state.lastUserMessageId = event.message_id || state.lastUserMessageId;
      if (event.text) addMessage("user", event.text).dataset.messageId = event.message_id || "";
      break;
    case "response.started":
      state.responseId = event.response_id;
      replyItem(event.response_id);
      break;
    case "response.text.delta": {
      const item = replyItem(event.response_id);
      item.querySelector(".text").textContent += event.delta || "";
      item.dataset.deltas = String(Number(item.dataset.deltas) + 1);
      break;
    }
    case "response.done": {
      const item = replyItem(event.response_id);
      const text = item.querySelector(".text");
      // Interrupted: show what was heard (what is stored), not everything that was generated.
      if (event.text && (event.interrupted || !text.textContent)) text.textContent = event.text;
      item.dataset.state = "done";
      item.dataset.messageId = event.message_id || "";
      if (event.interrupted) markInterrupted(item);
      if (state.responseId === event.response_id) state.responseId = null;
      (state.conversationId ? Promise.resolve() : findConversation(event.message_id || state.lastUserMessageId))
        .then(refreshHistory)
        .catch((error) => showBanner(fmt(T.load_failed, { message: error.message }), "load"));
      break;
    }
    case "metrics":
      showLatency(event);
      break;
    case "error":
      showBanner(fmt(T.server_error, { message: event.message || event.code }), "server");
      break;
    default:
      break;
  }
  updateStopButton();
}

function showLatency(event) {
  const item = state.replies.get(event.response_id);
  if (!item || typeof event.first_audio_ms !== "number") return;
  const note = document.createElement("small");
  note.className = "latency";
  note.title = T.latency_title;
  note.textContent = fmt(T.latency, { ms: Math.round(event.first_audio_ms) });
  item.dataset.firstAudioMs = String(event.first_audio_ms);
  item.append(note);
}

// --- Microphone -------------------------------------------------------------------------------

const mic = new Microphone({
  raw: CONFIG.rawMic,
  onLevel: (level) => {
    state.peakLevel = Math.max(state.peakLevel, level);
    app.dataset.inputLevel = state.peakLevel.toFixed(4);
    const percent = Math.min(100, Math.round(Math.sqrt(level) * 140)); // perceptual-ish scale
    $("level-bar").style.width = `${percent}%`;
    $("level-meter").setAttribute("aria-valuenow", String(percent));
  },
  onChunk: (pcm) => {
    const sending = app.dataset.mode === "handsfree" || state.talking;
    if (sending && voice?.sendAudio(pcm)) {
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
    const message =
      name === "NotAllowedError" || name === "SecurityError"
        ? T.mic_denied
        : name === "NotFoundError"
          ? T.mic_missing
          : fmt(T.mic_failed, { error: error?.message || String(error) });
    showBanner(message, "mic");
  }
  renderMic();
}

function renderMic() {
  $("mic-toggle").setAttribute("aria-pressed", String(mic.active));
  $("mic-toggle").textContent = mic.active ? T.mic_stop : T.mic_start;
}

$("mic-toggle").addEventListener("click", async () => {
  if (mic.active) {
    mic.stop();
    renderMic();
  } else {
    await startMic();
  }
});

function setMode(mode) {
  app.dataset.mode = mode;
  $("ptt").hidden = mode !== "ptt";
  $("mic-toggle").hidden = mode === "ptt";
  if (mode === "ptt" && !mic.active) startMic(); // opened now, sent only while held
}

document.querySelectorAll('input[name="mode"]').forEach((radio) =>
  radio.addEventListener("change", () => radio.checked && setMode(radio.value)),
);

function pttDown() {
  if (state.talking || app.dataset.mode !== "ptt") return;
  if (player.busy || state.responseId) stopReply({ cancel: true }); // talking over the reply
  state.talking = true;
  $("ptt").setAttribute("aria-pressed", "true");
  $("ptt").textContent = T.ptt_release;
  if (!mic.active) startMic();
}

function pttUp() {
  if (!state.talking) return;
  state.talking = false;
  $("ptt").setAttribute("aria-pressed", "false");
  $("ptt").textContent = T.ptt_hold;
  voice?.send({ type: "input_audio.commit" });
}

$("ptt").addEventListener("pointerdown", (event) => {
  event.preventDefault();
  $("ptt").setPointerCapture?.(event.pointerId);
  pttDown();
});
$("ptt").addEventListener("pointerup", pttUp);
$("ptt").addEventListener("pointercancel", pttUp);

const typing = (target) => target.closest("input:not([type=radio]), textarea, select, [contenteditable]");

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("stop").disabled) {
    stopReply({ cancel: true });
    return;
  }
  if (event.code === "Space" && app.dataset.mode === "ptt" && !typing(event.target)) {
    event.preventDefault();
    if (!event.repeat) pttDown();
  }
});
document.addEventListener("keyup", (event) => {
  if (event.code === "Space" && state.talking) {
    event.preventDefault();
    pttUp();
  }
});

$("stop").addEventListener("click", () => stopReply({ cancel: true }));

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
  if (player.busy) player.stop(state.responseId);
  $("text-input").value = "";
});

// --- Instances, memory, history ---------------------------------------------------------------

async function loadInstances(selectName) {
  const [instances, characters] = await Promise.all([rest.listInstances(), rest.listCharacters()]);
  state.instances = instances.items;
  const select = $("instance-select");
  select.replaceChildren(select.options[0]);
  for (const instance of state.instances) {
    select.append(new Option(`${instance.name} — ${instance.character_name} (${instance.language})`, instance.id));
  }
  $("new-instance-character").replaceChildren(
    ...characters.items.map((character) => new Option(`${character.name} (${character.language})`, character.id)),
  );
  const wanted = state.instances.find((i) => i.name === selectName);
  if (wanted) {
    select.value = wanted.id;
    selectInstance(wanted.id);
  }
}

async function selectInstance(id) {
  const instance = state.instances.find((i) => i.id === id) || null;
  state.instance = instance;
  state.replies.clear();
  $("log").replaceChildren();
  $("partial").textContent = "";
  if (!instance) {
    voice?.close();
    voice = null;
    return;
  }
  connect(instance);
  await Promise.all([loadMemory(instance), refreshHistory()]);
}

async function loadMemory(instance) {
  try {
    const memory = await rest.getMemory(instance.id);
    $("memory-text").textContent = memory.text || T.no_memory;
    $("memory-meta").textContent = fmt(T.memory_chars, { chars: memory.chars, limit: memory.limit });
  } catch (error) {
    showBanner(fmt(T.load_failed, { message: error.message }), "load");
  }
}

async function refreshHistory() {
  const instance = state.instance;
  if (!instance) return;
  try {
    const conversations = await rest.listConversations(instance.id);
    const list = $("conversations");
    list.replaceChildren();
    if (conversations.items.length === 0) {
      const empty = document.createElement("li");
      empty.textContent = T.no_conversations;
      list.append(empty);
    }
    for (const conversation of conversations.items) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.dataset.conversationId = conversation.id;
      const when = new Date(conversation.started_at).toLocaleString(document.documentElement.lang);
      button.textContent = `${when} · ${fmt(T.messages_count, { count: conversation.message_count })}`;
      button.addEventListener("click", () => showConversation(conversation.id));
      item.append(button);
      list.append(item);
    }
  } catch (error) {
    showBanner(fmt(T.load_failed, { message: error.message }), "load");
  }
}

async function showConversation(id) {
  try {
    const messages = await rest.listMessages(id);
    const list = $("history-messages");
    list.replaceChildren();
    for (const message of messages.items) {
      const item = document.createElement("li");
      item.className = `msg ${message.role}`;
      item.dataset.messageId = message.id;
      item.textContent = message.text;
      if (message.interrupted) markInterrupted(item);
      list.append(item);
    }
  } catch (error) {
    showBanner(fmt(T.load_failed, { message: error.message }), "load");
  }
}

$("instance-select").addEventListener("change", (event) => selectInstance(event.target.value));

$("new-instance-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("new-instance-error").textContent = "";
  try {
    const created = await rest.createInstance({
      name: $("new-instance-name").value.trim(),
      character_id: $("new-instance-character").value,
      memory: $("new-instance-memory").value,
    });
    form.reset();
    $("new-instance").open = false;
    await loadInstances(created.name);
    $("notice").textContent = fmt(T.instance_created, { name: created.name });
  } catch (error) {
    $("new-instance-error").textContent = error.errors?.length
      ? error.errors.map((e) => `${e.field}: ${e.message}`).join("; ")
      : error.message;
  }
});

window.addEventListener("beforeunload", () => voice?.close());

loadInstances(new URLSearchParams(location.search).get("instance")).catch((error) =>
  showBanner(fmt(T.load_failed, { message: error.message }), "load"),
);
