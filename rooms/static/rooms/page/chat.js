/** The chat: the log of lines "HH:MM name - text" and the composer (recipient, message, send). */

function hhmm(date) {
  const d = date || new Date();
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/** The chat log: lines "HH:MM name - text". */
export class ChatLog {
  constructor(element) {
    this.element = element;
  }

  /** Add one line; ``kind`` is "system", "self", "private" or "" (others). */
  add(name, text, kind = "", note = "") {
    const line = document.createElement("div");
    line.className = `chat-line ${kind ? "chat-" + kind : ""}`;
    const time = document.createElement("span");
    time.className = "chat-time";
    time.textContent = hhmm();
    const who = document.createElement("span");
    who.className = "chat-from";
    who.textContent = name;
    const body = document.createElement("span");
    body.className = "chat-text";
    body.textContent = text;
    line.append(time, " ", who, " - ", body);
    if (note) line.dataset.note = note;
    this.element.appendChild(line);
    this.element.scrollTop = this.element.scrollHeight;
  }

  /** A system line from "chat". */
  system(text) {
    this.add("chat", text, "system");
  }

  clear() {
    this.element.replaceChildren();
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
    select.replaceChildren(new Option("To everyone", ""));
    if (room) for (const p of room.getParticipants()) select.add(new Option(`To ${p.name()} only (private)`, p.name()));
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
      () => this.chat.add(this.room() ? this.room().selfName() : "me", text, target ? "self chat-private" : "self", target ? `to ${to}` : ""),
      (err) => this.chat.system(`not sent: ${(err && err.message) || err}`),
    );
    message.value = "";
    message.focus();
  }
}
