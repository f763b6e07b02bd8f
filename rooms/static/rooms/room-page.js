/**
 * What the three example pages share: connect/join controls, the chat log,
 * the invite link and remote "slots" (a name, displays and a status per slot).
 * It only uses the public Room API SDK (roomapi.js).
 */
import {connect, ROOM_EVENT, SESSION_STATUS, STREAM_STATUS} from "./roomapi.js";

/** Shorthand for document.getElementById. */
export const $ = (id) => document.getElementById(id);

/** ws(s)://<this host>, the default server URL. */
export function defaultServerUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
}

let roomName = null;

/** The room of the page: ?roomName=..., else a random room-xxxxxx. */
export function getRoomName() {
  if (roomName) return roomName;
  const param = new URLSearchParams(location.search).get("roomName");
  if (param && param.trim()) roomName = param.trim();
  else {
    const bytes = crypto.getRandomValues(new Uint8Array(3));
    roomName = "room-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  }
  return roomName;
}

/** The invite link for a room on this page. */
export function inviteUrl(name) {
  return `${location.origin}${location.pathname}?roomName=${encodeURIComponent(name)}`;
}

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

/** Show a status word in a badge element (its class follows the status). */
export function setStatus(element, status) {
  if (!element) return;
  element.textContent = status;
  element.dataset.status = status;
}

/**
 * One remote participant's place on the page: a name label and one display
 * per stream kind ("camera", optionally "screen"), each with a status badge.
 */
export class Slot {
  /**
   * @param {{root: HTMLElement, name: HTMLElement, displays: Object<string, {display: HTMLElement, status: HTMLElement, tile?: HTMLElement}>}} parts
   */
  constructor(parts) {
    this.parts = parts;
    this.participant = null;
    this.playing = {};
    this.clear();
  }

  /** The slot is free. */
  clear() {
    for (const kind of Object.keys(this.playing)) this.stopKind(kind);
    this.participant = null;
    this.parts.name.textContent = "";
    this.parts.root.classList.remove("occupied");
    for (const [kind, part] of Object.entries(this.parts.displays)) {
      setStatus(part.status, "NONE");
      this.setMuted(kind, false, false);
    }
  }

  /** Give the slot to a participant and play what it publishes. */
  assign(participant) {
    this.participant = participant;
    this.parts.name.textContent = participant.name();
    this.parts.root.classList.add("occupied");
    for (const stream of participant.getStreams()) this.play(stream);
  }

  /** Play one of the participant's streams in the display of its kind. */
  play(stream) {
    const kind = stream.kind() in this.parts.displays ? stream.kind() : null;
    if (!kind) return;
    const current = this.playing[kind];
    if (current && current.stream().id() === stream.id() && current.status() !== STREAM_STATUS.STOPPED) return;
    this.stopKind(kind);
    const part = this.parts.displays[kind];
    this.setMuted(kind, stream.isAudioMuted(), stream.isVideoMuted());
    const playing = stream.play(part.display);
    this.playing[kind] = playing;
    const show = (s) => {
      if (this.playing[kind] === playing) setStatus(part.status, s.status());
    };
    playing
      .on(STREAM_STATUS.PENDING, show)
      .on(STREAM_STATUS.PLAYING, show)
      .on(STREAM_STATUS.STOPPED, show)
      .on(STREAM_STATUS.UNPUBLISHED, show)
      .on(STREAM_STATUS.FAILED, show);
    show(playing);
  }

  /** The stream of ``kind`` went away. */
  stopKind(kind) {
    const playing = this.playing[kind];
    delete this.playing[kind];
    if (playing) playing.stop();
    const part = this.parts.displays[kind];
    if (part) {
      setStatus(part.status, "NONE");
      this.setMuted(kind, false, false);
    }
  }

  /** Show a stream's mute flags on its tile. */
  setMuted(kind, audio, video) {
    const part = this.parts.displays[kind];
    if (!part) return;
    const tile = part.tile || part.display.closest(".tile") || part.display;
    tile.dataset.audioMuted = String(Boolean(audio));
    tile.dataset.videoMuted = String(Boolean(video));
  }
}

/**
 * Wire a page: login/join/leave, chat, invite, local publishing and slots.
 * @param {{maxParticipants: number, slots: Slot[], constraints?: function(): MediaStreamConstraints,
 *          onJoined?: function(object): void, onLeft?: function(): void}} config
 */
export function startRoomPage(config) {
  const chat = new ChatLog($("chat"));
  const slots = config.slots;
  let connection = null;
  let room = null;
  let localStream = null;

  $("url").value = defaultServerUrl();
  const invite = $("inviteAddr");
  const showInvite = (name) => {
    invite.textContent = inviteUrl(name);
    invite.href = inviteUrl(name);
  };
  showInvite(getRoomName());

  const setJoined = (joined) => {
    document.body.classList.toggle("in-room", joined);
    $("joinBtn").textContent = joined ? "Leave" : "Join";
    $("joinBtn").dataset.action = joined ? "leave" : "join";
    $("joinBtn").disabled = false;
    $("url").disabled = joined;
    $("login").disabled = joined;
    for (const id of ["sendBtn", "message", "recipient", "muteAudioBtn", "muteVideoBtn", "publishBtn"]) {
      if ($(id)) $(id).disabled = !joined;
    }
  };
  setJoined(false);
  setStatus($("status"), "DISCONNECTED");
  setStatus($("localStatus"), "NONE");

  const refreshRecipients = () => {
    const select = $("recipient");
    if (!select) return;
    const chosen = select.value;
    select.replaceChildren(new Option("To everyone", ""));
    if (room) for (const p of room.getParticipants()) select.add(new Option(`To ${p.name()} only (private)`, p.name()));
    select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
  };

  const slotOf = (participant) => slots.find((s) => s.participant && s.participant.name() === participant.name());
  const install = (participant) => {
    if (slotOf(participant)) return slotOf(participant);
    const free = slots.find((s) => !s.participant);
    if (free) free.assign(participant);
    return free;
  };

  const onLeft = () => {
    for (const slot of slots) slot.clear();
    room = null;
    localStream = null;
    setStatus($("localStatus"), "NONE");
    refreshRecipients();
    setJoined(false);
    updateMuteButtons();
    if (config.onLeft) config.onLeft();
  };

  const updateMuteButtons = () => {
    const a = $("muteAudioBtn");
    const v = $("muteVideoBtn");
    const p = $("publishBtn");
    const live = localStream && localStream.status() === STREAM_STATUS.PUBLISHING;
    a.textContent = live && localStream.isAudioMuted() ? "Unmute A" : "Mute A";
    v.textContent = live && localStream.isVideoMuted() ? "Unmute V" : "Mute V";
    a.classList.toggle("active", Boolean(live && localStream.isAudioMuted()));
    v.classList.toggle("active", Boolean(live && localStream.isVideoMuted()));
    a.disabled = v.disabled = !live;
    p.textContent = localStream && [STREAM_STATUS.PUBLISHING, STREAM_STATUS.PENDING].includes(localStream.status()) ? "Stop" : "Publish";
    p.disabled = !room;
    $("localTile").dataset.videoMuted = String(Boolean(live && localStream.isVideoMuted()));
    $("localTile").dataset.audioMuted = String(Boolean(live && localStream.isAudioMuted()));
  };

  const publishLocal = () => {
    if (!room) return;
    localStream = room.publish({
      display: $("localDisplay"),
      constraints: config.constraints ? config.constraints() : {audio: true, video: true},
      record: false,
      receiveVideo: false,
      receiveAudio: false,
    });
    const show = (stream) => {
      setStatus($("localStatus"), stream.status());
      if (stream.status() === STREAM_STATUS.FAILED && stream.getInfo()) {
        $("failedInfo").textContent = stream.getInfo().message || "";
      }
      updateMuteButtons();
    };
    localStream
      .on(STREAM_STATUS.PENDING, show)
      .on(STREAM_STATUS.PUBLISHING, show)
      .on(STREAM_STATUS.UNPUBLISHED, show)
      .on(STREAM_STATUS.FAILED, show);
    updateMuteButtons();
  };

  const joinRoom = () => {
    connection
      .join({name: getRoomName(), record: false, maxParticipants: config.maxParticipants})
      .on(ROOM_EVENT.STATE, (r) => {
        room = r;
        const participants = r.getParticipants();
        if (participants.length >= config.maxParticipants) {
          $("failedInfo").textContent = "Current room is full.";
          r.leave().then(onLeft, onLeft);
          return;
        }
        showInvite(r.name());
        setJoined(true);
        if (participants.length > 0) {
          chat.system("participants: " + participants.map((p) => p.name()).join(","));
          for (const p of participants) install(p);
        } else {
          chat.system("room is empty");
        }
        refreshRecipients();
        publishLocal();
        if (config.onJoined) config.onJoined(r);
      })
      .on(ROOM_EVENT.JOINED, (participant) => {
        install(participant);
        refreshRecipients();
        chat.add(participant.name(), "joined", "system");
      })
      .on(ROOM_EVENT.LEFT, (participant) => {
        const slot = slotOf(participant);
        if (slot) slot.clear();
        refreshRecipients();
        chat.add(participant.name(), "left", "system");
        // Someone waiting for a free slot gets it now.
        if (room) for (const p of room.getParticipants()) if (!slotOf(p)) install(p);
      })
      .on(ROOM_EVENT.PARTICIPANT_UPDATED, (participant) => {
        if (participant.state() === "disconnected") chat.add(participant.name(), "disconnected", "system");
        else if (participant.state() === "connected") chat.add(participant.name(), "reconnected", "system");
      })
      .on(ROOM_EVENT.PUBLISHED, (participant, stream) => {
        const slot = install(participant);
        if (slot && stream) slot.play(stream);
      })
      .on(ROOM_EVENT.UNPUBLISHED, (participant, stream) => {
        const slot = slotOf(participant);
        if (slot && stream) slot.stopKind(stream.kind());
      })
      .on(ROOM_EVENT.STREAM_UPDATED, (participant, stream) => {
        const slot = slotOf(participant);
        if (slot && stream) slot.setMuted(stream.kind(), stream.isAudioMuted(), stream.isVideoMuted());
      })
      .on(ROOM_EVENT.CLOSED, () => onLeft())
      .on(ROOM_EVENT.KICKED, () => {
        chat.system("you were removed from the room");
        onLeft();
      })
      .on(ROOM_EVENT.FAILED, (r, info) => {
        $("failedInfo").textContent =
          info && info.code === "room_full" ? "Current room is full." : (info && info.message) || "Could not join.";
        onLeft();
        connection.disconnect();
      })
      .on(ROOM_EVENT.MESSAGE, (message) => {
        chat.add(message.from.name(), message.text, message.private ? "private" : "", message.private ? "to you" : "");
      });
  };

  $("joinBtn").addEventListener("click", () => {
    if ($("joinBtn").dataset.action === "leave") {
      $("joinBtn").disabled = true;
      const r = room;
      const done = () => {
        onLeft();
        if (connection) connection.disconnect();
      };
      if (r) r.leave().then(done, done);
      else done();
      return;
    }
    const username = $("login").value.trim();
    if (!username) {
      $("failedInfo").textContent = "Enter a login first.";
      $("login").focus();
      return;
    }
    $("failedInfo").textContent = "";
    $("joinBtn").disabled = true;
    setStatus($("status"), "PENDING");
    // ?relay=1 (support cases): TURN relay candidates only, with the ICE servers the session hands out.
    const iceTransportPolicy = new URLSearchParams(location.search).get("relay") === "1" ? "relay" : "all";
    const session = connect({urlServer: $("url").value, username, iceTransportPolicy});
    connection = session;
    session
      .on(SESSION_STATUS.ESTABLISHED, (s) => {
        setStatus($("status"), s.status());
        joinRoom();
      })
      .on(SESSION_STATUS.FAILED, (s) => {
        setStatus($("status"), s.status());
        const info = s.getInfo();
        if (info && info.message) $("failedInfo").textContent = info.message;
        if (connection === session) onLeft();
      })
      .on(SESSION_STATUS.DISCONNECTED, (s) => {
        setStatus($("status"), s.status());
        if (connection === session) onLeft();
      });
  });

  $("publishBtn").addEventListener("click", () => {
    if (localStream && [STREAM_STATUS.PUBLISHING, STREAM_STATUS.PENDING].includes(localStream.status())) {
      localStream.stop();
    } else {
      publishLocal();
    }
  });
  $("muteAudioBtn").addEventListener("click", () => {
    if (!localStream) return;
    (localStream.isAudioMuted() ? localStream.unmuteAudio() : localStream.muteAudio()).then(updateMuteButtons);
    updateMuteButtons();
  });
  $("muteVideoBtn").addEventListener("click", () => {
    if (!localStream) return;
    (localStream.isVideoMuted() ? localStream.unmuteVideo() : localStream.muteVideo()).then(updateMuteButtons);
    updateMuteButtons();
  });

  const send = () => {
    const text = $("message").value;
    if (!room || !text.trim()) return;
    const to = $("recipient") ? $("recipient").value : "";
    const target = to ? room.getParticipant(to) : null;
    const sending = target ? target.sendMessage(text) : room.sendMessage(text);
    sending.then(
      () => chat.add(room ? room.selfName() : "me", text, target ? "self chat-private" : "self", target ? `to ${to}` : ""),
      (err) => chat.system(`not sent: ${(err && err.message) || err}`),
    );
    $("message").value = "";
    $("message").focus();
  };
  $("sendBtn").addEventListener("click", send);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      send();
    }
  });

  return {
    chat,
    get room() {
      return room;
    },
    get connection() {
      return connection;
    },
    get localStream() {
      return localStream;
    },
  };
}
