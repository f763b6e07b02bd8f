/**
 * What the three example pages share, wired from small modules over the Room API SDK (roomapi.js):
 * page/chat.js (log, history, composer, invite), page/tiles.js (remote tiles and layouts),
 * page/controls.js (the local stream), page/devices.js (pickers, preview, meter), page/participants.js
 * (people and moderation), page/quality.js (connection quality, speaking, stats), page/strings.js (UI text).
 */
import {connect, ERROR_CODE, ROOM_EVENT, SESSION_STATUS} from "./roomapi.js";
import {defaultServerUrl, getRoomName, inviteUrl} from "./page/address.js";
import {ChatLog, Composer, EarlierMessages, Invite, showHistory} from "./page/chat.js";
import {LocalControls} from "./page/controls.js";
import {Devices} from "./page/devices.js";
import {$, announce, pageParam, setStatus} from "./page/dom.js";
import {ParticipantsPanel} from "./page/participants.js";
import {StatsMonitor} from "./page/quality.js";
import {t} from "./page/strings.js";
import {Grid, Slot, SlotSet, toggleFullscreen} from "./page/tiles.js";

export {$, setStatus, Slot, Grid, defaultServerUrl, getRoomName, inviteUrl, ChatLog, pageParam, t};

/**
 * Wire a page: login/join/leave, devices, chat, invite, local publishing, remote tiles, participants, stats.
 * @param {{maxParticipants: number, slots?: Slot[], grid?: Grid, constraints?: function(): MediaStreamConstraints,
 *          onJoined?: function(object): void, onLeft?: function(): void}} config
 *   ``slots``: fixed places (a page for two); ``grid``: a tile per participant (the conference).
 */
export function startRoomPage(config) {
  const stage = config.grid || new SlotSet(config.slots || []);
  let connection = null;
  let room = null;
  const fail = (text) => {
    $("failedInfo").textContent = text;
  };
  const unread = $("unread");
  const chat = new ChatLog($("chat"), (n) => {
    if (!unread) return;
    unread.hidden = n === 0;
    unread.textContent = n ? t("unread_n", {n}) : "";
  });
  const devices = new Devices({onSwitch: (kind, id) => switchDevice(kind, id)});
  const local = new LocalControls({
    room: () => room,
    constraints: config.constraints || (() => devices.constraints()),
    onFailed: fail,
  });
  const composer = new Composer({
    chat,
    room: () => room,
    elements: {recipient: $("recipient"), message: $("message"), send: $("sendBtn")},
  });
  const invite = new Invite();
  const earlier = new EarlierMessages({chat, room: () => room, button: $("loadEarlierBtn")});
  /** True once the relay reported active speakers in this room: its events drive the highlight then. */
  let relaySpeakers = false;
  const showSpeakers = (speakers) => {
    relaySpeakers = true;
    const names = new Set(speakers.map((s) => s.login).filter(Boolean));
    for (const slot of stage.all()) if (slot.name()) stage.setSpeaking(slot.name(), names.has(slot.name()));
    $("localTile").dataset.speaking = String(Boolean(room && names.has(room.selfName())));
  };
  const panel = new ParticipantsPanel({room: () => room, onError: fail, onDone: () => fail(""), local: () => local.stream});
  local.onChange = () => panel.render();
  const monitor = new StatsMonitor({
    stage,
    local: () => local.stream,
    onLocalLevel: (level) => devices.showLevel(level),
    levelsSpeak: () => !relaySpeakers,
  });
  const onVideo = (video) => devices.applySink(video);
  if (config.grid) config.grid.onVideo = onVideo;
  else for (const slot of stage.all()) slot.hooks.onVideo = onVideo;

  const switchDevice = (kind, deviceId) => local.switchDevice(kind, deviceId);

  $("url").value = defaultServerUrl();
  invite.show(inviteUrl(getRoomName()));

  const chatToggle = $("chatToggle");
  if (chatToggle) {
    chatToggle.addEventListener("click", () => {
      const hide = !document.body.classList.contains("chat-hidden");
      document.body.classList.toggle("chat-hidden", hide);
      chatToggle.setAttribute("aria-expanded", String(!hide));
      chat.setHidden(hide);
    });
  }
  const fullscreenBtn = $("fullscreenBtn");
  if (fullscreenBtn) {
    fullscreenBtn.addEventListener("click", () => toggleFullscreen($("stage")));
    document.addEventListener("fullscreenchange", () => {
      fullscreenBtn.textContent = document.fullscreenElement ? t("exit_fullscreen") : t("fullscreen_room");
    });
  }

  /** The reconnect banner: shown from the session's RECONNECTING until the room's RECONNECTED (or the end). */
  const setReconnecting = (on) => {
    $("reconnectBanner").hidden = !on;
  };

  const setJoined = (joined) => {
    document.body.classList.toggle("in-room", joined);
    $("joinBtn").textContent = joined ? t("leave") : t("join");
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
    setReconnecting(false);
    stage.clear();
    room = null;
    relaySpeakers = false;
    $("localTile").dataset.speaking = "false";
    earlier.update();
    local.reset();
    monitor.stop();
    composer.refreshRecipients();
    setJoined(false);
    local.update();
    panel.render();
    devices.setInCall(false);
    if (config.onLeft) config.onLeft();
  };

  const joinRoom = () => {
    connection
      .join({name: getRoomName(), record: false, maxParticipants: config.maxParticipants})
      .on(ROOM_EVENT.STATE, (r) => {
        room = r;
        const participants = r.getParticipants();
        const roomLimit = (r.info() && r.info().max_participants) || config.maxParticipants;
        const limit = config.grid ? roomLimit : Math.min(config.maxParticipants, roomLimit);
        if (participants.length >= limit) {
          fail(t("room_full"));
          r.leave().then(onLeft, onLeft);
          return;
        }
        invite.show(inviteUrl(r.name()));
        setJoined(true);
        showHistory(chat, r);
        earlier.update();
        if (participants.length > 0) {
          chat.system(t("participants_line", {names: participants.map((p) => p.name()).join(",")}));
          for (const p of participants) stage.install(p);
        } else {
          chat.system(t("room_is_empty"));
        }
        composer.refreshRecipients();
        panel.render();
        devices.setInCall(true).then(() => {
          if (room === r) local.publish();
        });
        monitor.start();
        if (config.onJoined) config.onJoined(r);
      })
      .on(ROOM_EVENT.JOINED, (participant) => {
        stage.install(participant);
        composer.refreshRecipients();
        panel.render();
        chat.add(participant.name(), t("joined"), {kind: "system", counts: false});
        announce(t("announce_joined", {name: participant.name()}));
      })
      .on(ROOM_EVENT.LEFT, (participant) => {
        stage.remove(participant);
        composer.refreshRecipients();
        panel.render();
        chat.add(participant.name(), t("left"), {kind: "system", counts: false});
        announce(t("announce_left", {name: participant.name()}));
        // Someone waiting for a free slot gets it now.
        if (room) for (const p of room.getParticipants()) if (!stage.of(p)) stage.install(p);
      })
      .on(ROOM_EVENT.PARTICIPANT_UPDATED, (participant) => {
        panel.render();
        const state = participant.state();
        if (state === "disconnected" || state === "connected") {
          const word = state === "disconnected" ? t("disconnected") : t("reconnected");
          chat.add(participant.name(), word, {kind: "system", counts: false});
          announce(t(`announce_${state}`, {name: participant.name()}));
        }
      })
      .on(ROOM_EVENT.PUBLISHED, (participant, stream) => {
        const slot = stage.install(participant);
        if (slot && stream) slot.play(stream);
        panel.render();
      })
      .on(ROOM_EVENT.UNPUBLISHED, (participant, stream) => {
        const slot = stage.of(participant);
        if (slot && stream) slot.stopKind(stream.kind());
        panel.render();
      })
      .on(ROOM_EVENT.STREAM_UPDATED, (participant, stream) => {
        const slot = stage.of(participant);
        if (slot && stream) slot.setMuted(stream.kind(), stream.isAudioMuted(), stream.isVideoMuted());
        panel.render();
      })
      .on(ROOM_EVENT.ROOM_UPDATED, () => panel.render())
      .on(ROOM_EVENT.RECONNECTED, (r) => {
        // Resumed without a click: the SDK re-publishes and re-plays the same stream objects.
        if (connection) setStatus($("status"), connection.status());
        setReconnecting(false);
        showHistory(chat, r, {header: false}); // messages sent while away (those shown already are skipped)
        earlier.update();
        for (const p of r.getParticipants()) stage.install(p); // who joined meanwhile (the others keep their slots)
        composer.refreshRecipients();
        panel.render();
        announce(t("reconnected_self"));
      })
      .on(ROOM_EVENT.ACTIVE_SPEAKERS, (speakers) => showSpeakers(speakers))
      .on(ROOM_EVENT.CLOSED, () => onLeft())
      .on(ROOM_EVENT.KICKED, () => {
        chat.system(t("you_were_removed"));
        announce(t("you_were_removed"));
        onLeft();
      })
      .on(ROOM_EVENT.FAILED, (r, info) => {
        const code = info && info.code;
        const known = {[ERROR_CODE.ROOM_FULL]: t("room_full"), [ERROR_CODE.ROOM_LOCKED]: t("room_locked_refused")};
        fail(known[code] || (info && info.message) || t("could_not_join"));
        onLeft();
        connection.disconnect();
      })
      .on(ROOM_EVENT.MESSAGE, (message) => {
        chat.message({
          from: message.from.name(),
          text: message.text,
          isPrivate: message.private,
          to: message.to,
          sentAt: message.sentAt,
          id: message.id,
          self: false,
        });
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
      fail(t("enter_login"));
      $("login").focus();
      return;
    }
    fail("");
    $("joinBtn").disabled = true;
    setStatus($("status"), "PENDING");
    // ?relay=1 (support cases): TURN relay candidates only, with the ICE servers the session hands out.
    const iceTransportPolicy = new URLSearchParams(location.search).get("relay") === "1" ? "relay" : "all";
    const session = connect({urlServer: $("url").value, username, iceTransportPolicy});
    connection = session;
    session.on(SESSION_STATUS.RECONNECTING, (s) => {
      setStatus($("status"), s.status());
      setReconnecting(true);
    });
    session
      .on(SESSION_STATUS.ESTABLISHED, (s) => {
        setStatus($("status"), s.status());
        setReconnecting(false);
        if (!room) joinRoom();
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

  panel.render();
  devices.start();

  return {
    chat,
    stage,
    devices,
    local,
    /** Run a moderator action as the page's buttons do (resolves to false when refused). */
    moderate: (action, fields) => panel.act(action, fields),
    /** Show or hide the reconnect banner (for an SDK that reconnects by itself). */
    setReconnecting,
    /** Set the speaking highlight of a participant's tile (the relay's ACTIVE_SPEAKERS events drive it). */
    setSpeaking: (name, speaking) => stage.setSpeaking(name, speaking),
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
