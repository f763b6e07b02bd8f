/**
 * What the three example pages share, wired from small modules over the Room API SDK (roomapi.js):
 * page/chat.js (log and composer), page/tiles.js (remote slots), page/controls.js (the local stream),
 * page/address.js (server URL, room name, invite) and page/dom.js.
 */
import {connect, ROOM_EVENT, SESSION_STATUS} from "./roomapi.js";
import {defaultServerUrl, getRoomName, inviteUrl} from "./page/address.js";
import {ChatLog, Composer} from "./page/chat.js";
import {LocalControls} from "./page/controls.js";
import {$, setStatus} from "./page/dom.js";
import {Slot, SlotSet} from "./page/tiles.js";

export {$, setStatus, Slot, defaultServerUrl, getRoomName, inviteUrl, ChatLog};

/**
 * Wire a page: login/join/leave, chat, invite, local publishing and slots.
 * @param {{maxParticipants: number, slots: Slot[], constraints?: function(): MediaStreamConstraints,
 *          onJoined?: function(object): void, onLeft?: function(): void}} config
 */
export function startRoomPage(config) {
  const chat = new ChatLog($("chat"));
  const slots = new SlotSet(config.slots);
  let connection = null;
  let room = null;
  const fail = (text) => {
    $("failedInfo").textContent = text;
  };
  const local = new LocalControls({room: () => room, constraints: config.constraints, onFailed: fail});
  const composer = new Composer({
    chat,
    room: () => room,
    elements: {recipient: $("recipient"), message: $("message"), send: $("sendBtn")},
  });

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

  const onLeft = () => {
    slots.clear();
    room = null;
    local.reset();
    composer.refreshRecipients();
    setJoined(false);
    local.update();
    if (config.onLeft) config.onLeft();
  };

  const joinRoom = () => {
    connection
      .join({name: getRoomName(), record: false, maxParticipants: config.maxParticipants})
      .on(ROOM_EVENT.STATE, (r) => {
        room = r;
        const participants = r.getParticipants();
        if (participants.length >= config.maxParticipants) {
          fail("Current room is full.");
          r.leave().then(onLeft, onLeft);
          return;
        }
        showInvite(r.name());
        setJoined(true);
        if (participants.length > 0) {
          chat.system("participants: " + participants.map((p) => p.name()).join(","));
          for (const p of participants) slots.install(p);
        } else {
          chat.system("room is empty");
        }
        composer.refreshRecipients();
        local.publish();
        if (config.onJoined) config.onJoined(r);
      })
      .on(ROOM_EVENT.JOINED, (participant) => {
        slots.install(participant);
        composer.refreshRecipients();
        chat.add(participant.name(), "joined", "system");
      })
      .on(ROOM_EVENT.LEFT, (participant) => {
        const slot = slots.of(participant);
        if (slot) slot.clear();
        composer.refreshRecipients();
        chat.add(participant.name(), "left", "system");
        // Someone waiting for a free slot gets it now.
        if (room) for (const p of room.getParticipants()) if (!slots.of(p)) slots.install(p);
      })
      .on(ROOM_EVENT.PARTICIPANT_UPDATED, (participant) => {
        if (participant.state() === "disconnected") chat.add(participant.name(), "disconnected", "system");
        else if (participant.state() === "connected") chat.add(participant.name(), "reconnected", "system");
      })
      .on(ROOM_EVENT.PUBLISHED, (participant, stream) => {
        const slot = slots.install(participant);
        if (slot && stream) slot.play(stream);
      })
      .on(ROOM_EVENT.UNPUBLISHED, (participant, stream) => {
        const slot = slots.of(participant);
        if (slot && stream) slot.stopKind(stream.kind());
      })
      .on(ROOM_EVENT.STREAM_UPDATED, (participant, stream) => {
        const slot = slots.of(participant);
        if (slot && stream) slot.setMuted(stream.kind(), stream.isAudioMuted(), stream.isVideoMuted());
      })
      .on(ROOM_EVENT.CLOSED, () => onLeft())
      .on(ROOM_EVENT.KICKED, () => {
        chat.system("you were removed from the room");
        onLeft();
      })
      .on(ROOM_EVENT.FAILED, (r, info) => {
        fail(info && info.code === "room_full" ? "Current room is full." : (info && info.message) || "Could not join.");
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
      fail("Enter a login first.");
      $("login").focus();
      return;
    }
    fail("");
    $("joinBtn").disabled = true;
    setStatus($("status"), "PENDING");
    const session = connect({urlServer: $("url").value, username});
    connection = session;
    session
      .on(SESSION_STATUS.ESTABLISHED, (s) => {
        setStatus($("status"), s.status());
        joinRoom();
      })
      .on(SESSION_STATUS.FAILED, (s) => {
        setStatus($("status"), s.status());
        const info = s.getInfo();
        if (info && info.message) fail(info.message);
        if (connection === session) onLeft();
      })
      .on(SESSION_STATUS.DISCONNECTED, (s) => {
        setStatus($("status"), s.status());
        if (connection === session) onLeft();
      });
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
      return local.stream;
    },
  };
}
