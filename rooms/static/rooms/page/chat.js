/**
 * The chat: the log of lines "HH:MM name - text" (server times in local time, images from data: URLs),
 * the join history, the unread counter while the chat is hidden, the composer and the invite link.
 */
import {$, announce, el} from "./dom.js";
import {t} from "./strings.js";

/** A message token shown as an image: only data: URLs of raster images, base64. */
const IMAGE_URL = /^data:image\/(png|jpeg|gif|webp|avif|bmp);base64,[A-Za-z0-9+/]+={0,2}$/i;

/** "HH:MM" of a Date, or of an ISO time (the server's ``sent_at``), in the reader's local time. */
export function hhmm(when) {
  const d = when instanceof Date ? when : when ? new Date(when) : new Date();
  const date = Number.isNaN(d.getTime()) ? new Date() : d;
  return `${String(date.getHours()).padStart(2, "0")}:${String(date.getMinutes()).padStart(2, "0")}`;
}

/** The body of a message: text, with data:image tokens turned into (sized-down) images. */
export function messageBody(text, sender) {
  const body = el("span", {className: "chat-text"});
  const parts = String(text).split(/(\s+)/);
  if (!parts.some((part) => IMAGE_URL.test(part))) {
    body.textContent = text;
    return body;
  }
  for (const part of parts) {
    if (IMAGE_URL.test(part)) {
      body.append(el("img", {className: "chat-image", src: part, alt: t("chat_image_alt", {name: sender}), loading: "lazy"}));
    } else if (part) {
      body.append(part);
    }
  }
  return body;
}

/** The chat log: lines "HH:MM name - text"; counts unread lines while hidden. */
export class ChatLog {
  /** @param {HTMLElement} element  the log; @param {function(number): void} [onUnread] told the unread count */
  constructor(element, onUnread) {
    this.element = element;
    this.onUnread = onUnread || (() => {});
    this.hidden = false;
    this.unread = 0;
    /** ids of server messages shown already (history and live may overlap) */
    this.shown = new Set();
  }

  /**
   * Add one line.
   * @param {string} name  who (or "chat" for the page's own lines)
   * @param {string} text
   * @param {{kind?: string, note?: string, time?: string|Date, id?: number, counts?: boolean}} [options]
   *   kind: "system", "self", "private", "self chat-private" or "" (others); note: the private marker;
   *   time: the server's sent_at; id: the server's message id; counts: whether it counts as unread;
   *   before: insert the line before this one (an older message) instead of at the end.
   * @returns {HTMLElement|null} the line (null when message ``id`` is shown already)
   */
  add(name, text, options = {}) {
    const {kind = "", note = "", time, id, counts = true, before = null} = options;
    if (id !== undefined && id !== null) {
      if (this.shown.has(id)) return null;
      this.shown.add(id);
    }
    const line = el(
      "div",
      {className: `chat-line ${kind ? "chat-" + kind : ""}`},
      el("time", {className: "chat-time", dateTime: time ? String(time) : new Date().toISOString()}, hhmm(time)),
      " ",
      el("span", {className: "chat-from"}, name),
      " - ",
      messageBody(text, name),
    );
    if (note) line.dataset.note = note;
    if (id !== undefined && id !== null) line.dataset.id = String(id);
    if (before) {
      // An older line (load earlier): the reader's place in the log stays where it was.
      const height = this.element.scrollHeight;
      this.element.insertBefore(line, before);
      this.element.scrollTop += this.element.scrollHeight - height;
      return line;
    }
    this.element.appendChild(line);
    this.element.scrollTop = this.element.scrollHeight;
    if (counts && this.hidden) {
      this.unread += 1;
      this.onUnread(this.unread);
    }
    return line;
  }

  /** A system line from "chat". */
  system(text) {
    this.add("chat", text, {kind: "system", counts: false});
  }

  /** A server message (live or from the history) as the reader sees it; ``before``: see add(). */
  message({from, text, isPrivate, to, sentAt, id, self}, before = null) {
    const kind = self ? (isPrivate ? "self chat-private" : "self") : isPrivate ? "private" : "";
    let note = "";
    if (isPrivate) note = self ? t("chat_private_to", {names: (to || []).join(", ")}) : t("chat_private_to_you");
    return this.add(from, text, {kind, note, time: sentAt, id, counts: !self, before});
  }

  /** The line of the oldest server message shown, or null. */
  oldestMessage() {
    return this.element.querySelector(".chat-line[data-id]");
  }

  /** Show or hide the log's card; showing resets the unread count. */
  setHidden(hidden) {
    this.hidden = hidden;
    if (!hidden) {
      this.unread = 0;
      this.onUnread(0);
    }
  }

  clear() {
    this.element.replaceChildren();
    this.shown.clear();
  }
}

/**
 * Show the room's join history (the SDK's getHistory(): messages this reader may see, oldest first).
 * @param {ChatLog} chat
 * @param {object} room  the SDK's Room
 * @param {{header?: boolean}} [options]  header: the "earlier messages: N" line first (not after a resume)
 */
export function showHistory(chat, room, {header = true} = {}) {
  const history = room.getHistory() || [];
  if (!history.length) return;
  if (header) chat.system(t("chat_history", {count: history.length}));
  for (const m of history) chat.message(fromWire(m, room.selfName()));
}

/** A history message of the SDK (WireMessage) as ChatLog.message() takes it. */
function fromWire(m, self) {
  return {
    from: m.from || t("server"),
    text: m.text,
    isPrivate: m.to !== null && m.to !== undefined,
    to: m.to,
    sentAt: m.sent_at,
    id: m.id,
    self: m.from === self,
  };
}

/**
 * "Load earlier": pages through the server's history (the SDK's loadHistory()) while it has more,
 * putting each page above the oldest message shown.
 */
export class EarlierMessages {
  /**
   * @param {{chat: ChatLog, room: function(): object|null, button: HTMLButtonElement|null, pageSize?: number,
   *          onError?: function(string): void}} options
   */
  constructor({chat, room, button, pageSize = 20, onError}) {
    this.chat = chat;
    this.room = room;
    this.button = button;
    this.pageSize = pageSize;
    this.onError = onError || ((text) => chat.system(text));
    if (button) button.addEventListener("click", () => this.load());
    this.update();
  }

  /** Show the button while the room has older messages than those shown. */
  update() {
    if (!this.button) return;
    const room = this.room();
    this.button.hidden = !(room && room.hasMoreHistory());
    this.button.disabled = false;
  }

  /** Fetch one page of older messages and show it at the top of the log. */
  async load() {
    const room = this.room();
    if (!room || !this.button) return;
    this.button.disabled = true;
    try {
      const page = await room.loadHistory(this.pageSize);
      if (room !== this.room()) return;
      const oldest = this.chat.oldestMessage() || this.chat.element.firstChild;
      for (const m of page) this.chat.message(fromWire(m, room.selfName()), oldest);
      announce(t("chat_loaded_earlier", {count: page.length}));
    } catch (err) {
      this.onError(t("load_earlier_failed", {reason: (err && err.message) || err}));
    } finally {
      this.update();
    }
  }
}

/**
 * The composer: a recipient list of the room's participants, a message field and Send.
 * @param {{chat: ChatLog, elements: {recipient: HTMLSelectElement, message: HTMLInputElement, send: HTMLButtonElement},
 *          room: function(): object|null}} options
 */
export class Composer {
  constructor({chat, elements, room}) {
    this.chat = chat;
    this.elements = elements;
    this.room = room;
    elements.send.addEventListener("click", () => this.send());
    elements.message.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        this.send();
      }
    });
  }

  /** Rebuild the recipient list from the room's participants, keeping the choice if still possible. */
  refreshRecipients() {
    const select = this.elements.recipient;
    if (!select) return;
    const room = this.room();
    const chosen = select.value;
    select.replaceChildren(new Option(t("to_everyone"), ""));
    if (room) for (const p of room.getParticipants()) select.add(new Option(t("to_private", {name: p.name()}), p.name()));
    select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
  }

  /** Send the typed message to everyone or to the chosen recipient. */
  send() {
    const {message, recipient} = this.elements;
    const room = this.room();
    const text = message.value;
    if (!room || !text.trim()) return;
    const to = recipient ? recipient.value : "";
    const target = to ? room.getParticipant(to) : null;
    const sending = target ? target.sendMessage(text) : room.sendMessage(text);
    sending.then(
      (sent) =>
        this.chat.message({
          from: room.selfName(),
          text,
          isPrivate: Boolean(target),
          to: target ? [to] : null,
          sentAt: sent && sent.sent_at,
          id: sent && sent.id,
          self: true,
        }),
      (err) => this.chat.system(t("not_sent", {reason: (err && err.message) || err})),
    );
    message.value = "";
    message.focus();
  }
}

/** The invite link and its copy button. */
export class Invite {
  constructor() {
    this.link = $("inviteAddr");
    const button = $("copyInviteBtn");
    if (button) button.addEventListener("click", () => this.copy());
  }

  /** Show the invite link of ``url``. */
  show(url) {
    this.link.textContent = url;
    this.link.href = url;
  }

  /** Copy the link to the clipboard (a selection-and-copy where the Clipboard API is missing). */
  async copy() {
    const state = $("copyState");
    const url = this.link.href;
    let copied = false;
    try {
      await navigator.clipboard.writeText(url);
      copied = true;
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(this.link);
      const selection = getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      copied = document.execCommand && document.execCommand("copy");
    }
    if (state) state.textContent = copied ? t("invite_copied") : t("invite_copy_failed");
  }
}
