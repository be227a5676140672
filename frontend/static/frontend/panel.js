// The settings panel (a side panel on wide screens, a drawer on narrow ones): the instance,
// how to talk, a new conversation, memory, the history (newest first, with titles; a past
// conversation can be read and continued) and creating an instance.

import * as rest from "./api.js";
import { describeError } from "./errors.js";
import { $, app, fmt, markInterrupted, showError, state, T } from "./page.js";

/**
 * @param {{selectInstance: (instance: object | null) => void,
 *          continueConversation: (id: string, messages: object[], title: string) => void,
 *          newConversation: () => void}} hooks
 */
export function setUpPanel({ selectInstance, continueConversation, newConversation }) {
  let shown = null; // the past conversation whose messages are shown: {id, title, messages}

  function setOpen(open, focus = true) {
    app.dataset.settings = open ? "open" : "closed";
    $("settings-toggle").setAttribute("aria-expanded", String(open));
    if (open && focus) $("instance-select").focus();
  }
  $("settings-toggle").addEventListener("click", () => setOpen(app.dataset.settings !== "open"));
  $("settings-close").addEventListener("click", () => {
    setOpen(false);
    $("settings-toggle").focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && app.dataset.settings === "open" && $("settings").contains(event.target)) {
      setOpen(false);
      $("settings-toggle").focus();
    }
  });

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
    const wanted = state.instances.find((i) => i.name.toLowerCase() === (selectName || "").toLowerCase());
    if (wanted) {
      select.value = wanted.id;
      await choose(wanted.id);
    } else {
      setOpen(true, false); // nothing chosen yet: the first thing to do is in the panel
    }
  }

  async function choose(id) {
    const instance = state.instances.find((i) => i.id === id) || null;
    shown = null;
    $("history-messages").replaceChildren();
    $("history-continue").hidden = true;
    selectInstance(instance);
    if (instance) await Promise.all([loadMemory(instance), refreshHistory()]);
  }

  async function loadMemory(instance) {
    try {
      const memory = await rest.getMemory(instance.id);
      $("memory-text").textContent = memory.text || T.no_memory;
      $("memory-meta").textContent = fmt(T.memory_chars, { chars: memory.chars, limit: memory.limit });
    } catch (error) {
      showError(error, "load");
    }
  }

  async function refreshHistory() {
    const list = $("conversations");
    if (!state.instance) {
      list.replaceChildren();
      return;
    }
    try {
      const conversations = await rest.listConversations(state.instance.id);
      list.replaceChildren();
      if (conversations.items.length === 0) {
        const empty = document.createElement("li");
        empty.textContent = T.no_conversations;
        list.append(empty);
        return;
      }
      for (const conversation of conversations.items) list.append(historyEntry(conversation));
    } catch (error) {
      showError(error, "load");
    }
  }

  function historyEntry(conversation) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link entry";
    button.dataset.conversationId = conversation.id;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = conversation.title || T.untitled;
    const meta = document.createElement("small");
    meta.className = "meta";
    const when = new Date(conversation.last_activity_at || conversation.started_at).toLocaleString(
      document.documentElement.lang,
    );
    meta.textContent = `${when} · ${fmt(T.messages_count, { count: conversation.message_count })}`;
    if (conversation.id === state.conversationId) {
      button.setAttribute("aria-current", "true");
      meta.textContent += ` · ${T.current}`;
    }
    button.append(title, meta);
    button.addEventListener("click", () => showConversation(conversation));
    item.append(button);
    return item;
  }

  async function showConversation(conversation) {
    try {
      const messages = (await rest.listMessages(conversation.id)).items;
      const list = $("history-messages");
      list.replaceChildren();
      for (const message of messages) {
        const item = document.createElement("li");
        item.className = `msg ${message.role}`;
        item.dataset.messageId = message.id;
        item.textContent = message.text;
        if (message.interrupted) markInterrupted(item);
        list.append(item);
      }
      shown = { id: conversation.id, title: conversation.title || T.untitled, messages };
      $("history-continue").hidden = conversation.id === state.conversationId;
    } catch (error) {
      showError(error, "load");
    }
  }

  $("history-continue").addEventListener("click", async () => {
    if (!shown) return;
    try {
      await rest.reopenConversation(shown.id);
    } catch (error) {
      showError(error, "load");
      return;
    }
    $("history-continue").hidden = true;
    continueConversation(shown.id, shown.messages, shown.title);
    if (window.matchMedia("(max-width: 60rem)").matches) setOpen(false);
  });

  $("new-conversation").addEventListener("click", () => newConversation());
  $("instance-select").addEventListener("change", (event) => choose(event.target.value));

  $("new-instance-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const errorBox = $("new-instance-error");
    errorBox.replaceChildren();
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
      errorBox.append(formError(error));
    }
  });

  return { loadInstances, refreshHistory, loadMemory, setOpen };
}

/** A form's error: the short translated message, the server's words in a collapsible part. */
function formError(error) {
  const { text, details } = describeError(error, T.errors);
  const wrapper = document.createElement("div");
  const message = document.createElement("p");
  message.className = "error-text";
  message.textContent = text;
  wrapper.append(message);
  if (details) {
    const more = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = T.details;
    const pre = document.createElement("pre");
    pre.textContent = details;
    more.append(summary, pre);
    wrapper.append(more);
  }
  return wrapper;
}
