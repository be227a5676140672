// What every part of the page shares: its strings and settings, the state, the banner, the log.

import { describeError } from "./errors.js";

export const T = JSON.parse(document.getElementById("voz-strings").textContent);
export const CONFIG = JSON.parse(document.getElementById("voz-config").textContent);
export const $ = (id) => document.getElementById(id);
export const app = $("voz-app");

export const fmt = (text, values = {}) => text.replace(/\{(\w+)\}/g, (_, key) => values[key] ?? "");

export const state = {
  instances: [],
  instance: null,
  conversationId: null, // continued on reconnect
  responseId: null, // the response in progress (between response.started and response.done)
  awaitingReply: false, // a turn was sent and its reply has not finished
  lastUserMessageId: null, // finds the conversation when the server does not name it
  replies: new Map(), // response_id → its <li>
  talking: false, // push-to-talk held
  voiceAvailable: true, // false when the server has no recogniser for the language
  bargeInOnPartial: false, // session.started.interruption.by: "partial" (no voice activity detection)
  peakLevel: 0,
  framesSent: 0,
};

// --- Banner: a short message in the page's language, the server's words in "Details" ----------

/** Show `text` (already translated) with optional technical `details`; `kind` groups banners. */
export function showBanner(text, kind = "error", details = "") {
  $("banner-text").textContent = text;
  $("banner-detail-text").textContent = details;
  $("banner-details").hidden = !details;
  $("banner-details").open = false;
  $("banner").dataset.kind = kind;
  $("banner").hidden = false;
}

/** Show an error from the API or the voice protocol ({code, message, status, errors}). */
export function showError(error, kind = "error") {
  const { text, details } = describeError(error, T.errors);
  showBanner(text, kind, details);
}

/** Hide the banner if it is of one of `kinds` (any when none is given). */
export function hideBanner(...kinds) {
  if (kinds.length === 0 || kinds.includes($("banner").dataset.kind)) $("banner").hidden = true;
}

$("banner-close").addEventListener("click", () => hideBanner());

// --- The conversation log ---------------------------------------------------------------------

export function addMessage(role, text, { responseId, interrupted, messageId } = {}) {
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
  if (messageId) item.dataset.messageId = messageId;
  if (interrupted) markInterrupted(item);
  $("log").append(item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

export function markInterrupted(item) {
  item.dataset.state = "interrupted";
  if (item.querySelector(".tag")) return;
  const tag = document.createElement("small");
  tag.className = "tag";
  tag.textContent = T.interrupted;
  item.append(tag);
}

export function replyItem(responseId) {
  let item = state.replies.get(responseId);
  if (!item) {
    item = addMessage("assistant", "", { responseId });
    item.dataset.state = "streaming";
    item.dataset.deltas = "0";
    state.replies.set(responseId, item);
  }
  return item;
}

export function showLatency(event) {
  const item = state.replies.get(event.response_id);
  if (!item || typeof event.first_audio_ms !== "number") return;
  const note = document.createElement("small");
  note.className = "latency";
  note.title = T.latency_title;
  note.textContent = fmt(T.latency, { ms: Math.round(event.first_audio_ms) });
  item.dataset.firstAudioMs = String(event.first_audio_ms);
  item.append(note);
}

export function setConversation(id) {
  state.conversationId = id || null;
  app.dataset.conversation = id || "";
}
