/**
 * The participants panel: everyone with role, connection state and microphone/camera state; for a moderator
 * (the room's `can_moderate` grant) the server's moderation on the page: mute someone's audio or video,
 * kick, lock the room, change its limit. A refusal shows as an error line, never as a broken page.
 */
import {ERROR_CODE, STREAM_STATUS} from "../roomapi.js";
import {$, el} from "./dom.js";
import {t} from "./strings.js";

/** The participant's camera stream (else its first), or null. */
function cameraOf(participant) {
  const streams = participant.getStreams();
  return streams.find((s) => s.kind() === "camera") || streams[0] || null;
}

/**
 * @param {{room: function(): object|null, onError: function(string): void, onDone?: function(string): void,
 *          local?: function(): object|null}} options  ``local``: this page's published stream (its flags)
 */
export class ParticipantsPanel {
  constructor({room, onError, onDone, local}) {
    this.room = room;
    this.local = local || (() => null);
    this.onError = onError;
    this.onDone = onDone || (() => {});
    this.list = $("people");
    $("lockBtn").addEventListener("click", () => {
      const info = this.room() && this.room().info();
      this.act(info && info.locked ? "unlock" : "lock", {});
    });
    $("limitBtn").addEventListener("click", () => {
      const value = parseInt($("limitInput").value, 10);
      if (Number.isFinite(value) && value > 0) this.act("set_max_participants", {max_participants: value});
    });
  }

  /** Whether this client may moderate the room. */
  isModerator() {
    const room = this.room();
    return Boolean(room && room.grants().includes("can_moderate"));
  }

  /** Run a moderator action; a refusal goes to onError. */
  act(action, fields) {
    const room = this.room();
    if (!room) return Promise.resolve(false);
    return room.moderate(action, fields).then(
      () => {
        this.onDone(action);
        this.render();
        return true;
      },
      (err) => {
        const code = err && err.code;
        this.onError(code === ERROR_CODE.FORBIDDEN ? t("moderation_refused") : t("moderation_failed", {reason: (err && err.message) || code || err}));
        return false;
      },
    );
  }

  _flag(kind, state) {
    return el("span", {className: "flag", "data-kind": kind, "data-state": state}, t(`${kind}_${state}`));
  }

  _button(label, name, onClick, pressed) {
    const button = el("button", {className: "btn btn-ghost btn-small", type: "button", "aria-label": t(`${label}_of`, {name})}, t(label));
    if (pressed !== undefined) button.setAttribute("aria-pressed", String(pressed));
    button.addEventListener("click", onClick);
    return button;
  }

  /** This page's own microphone and camera state, as the others' rows show theirs. */
  _selfFlags() {
    const stream = this.local();
    // PENDING too: while it (re)starts, after a reconnect say, the stream's flags are still the user's choice.
    const live = stream && [STREAM_STATUS.PUBLISHING, STREAM_STATUS.PENDING].includes(stream.status());
    const audio = live ? (stream.isAudioMuted() ? "off" : "on") : "none";
    const video = live ? (stream.isVideoMuted() ? "off" : "on") : "none";
    return el("span", {className: "flags"}, this._flag("mic", audio), this._flag("cam", video));
  }

  _row(participant) {
    const name = participant.name();
    const stream = cameraOf(participant);
    const audio = stream ? (stream.isAudioMuted() ? "off" : "on") : "none";
    const video = stream ? (stream.isVideoMuted() ? "off" : "on") : "none";
    const role = participant.role() || "publisher";
    const state = participant.state() || "connected";
    const row = el(
      "li",
      {className: "person", "data-login": name, "data-state": state, "data-role": role},
      el("span", {className: "person-name"}, name),
      el("span", {className: "role"}, t(`role_${role}`)),
      el("span", {className: "conn", "data-state": state}, t(`state_${state}`)),
      el("span", {className: "flags"}, this._flag("mic", audio), this._flag("cam", video)),
    );
    if (this.isModerator()) {
      const actions = el("span", {className: "person-actions"});
      if (stream) {
        actions.append(
          this._button(audio === "off" ? "mod_unmute_audio" : "mod_mute_audio", name, () =>
            this.act("mute", {stream: stream.id(), audio: audio !== "off"}),
          ),
          this._button(video === "off" ? "mod_unmute_video" : "mod_mute_video", name, () =>
            this.act("mute", {stream: stream.id(), video: video !== "off"}),
          ),
        );
      }
      actions.append(this._button("mod_kick", name, () => this.act("kick", {login: name})));
      row.append(actions);
    }
    return row;
  }

  /** Redraw the panel from the room (call on every room event). */
  render() {
    const room = this.room();
    const rows = [];
    if (room) {
      const grants = room.grants();
      const selfRole = grants.includes("can_moderate") ? "moderator" : grants.includes("can_publish") ? "publisher" : "viewer";
      rows.push(
        el(
          "li",
          {className: "person person-self", "data-login": room.selfName(), "data-state": "connected", "data-role": selfRole},
          el("span", {className: "person-name"}, t("you_named", {name: room.selfName()})),
          el("span", {className: "role"}, t(`role_${selfRole}`)),
          el("span", {className: "conn", "data-state": "connected"}, t("state_connected")),
          this._selfFlags(),
        ),
      );
      for (const p of room.getParticipants()) rows.push(this._row(p));
    }
    this.list.replaceChildren(...rows);
    $("peopleCount").textContent = room ? `(${rows.length})` : "";
    const info = room && room.info();
    $("roomState").textContent = info
      ? [info.locked ? t("room_locked") : t("room_open"), t("room_limit", {n: info.max_participants})].join(" · ")
      : t("participants_before_join");
    const moderator = this.isModerator();
    $("roomControls").hidden = !moderator;
    if (moderator && info) {
      $("lockBtn").textContent = info.locked ? t("unlock_room") : t("lock_room");
      $("lockBtn").setAttribute("aria-pressed", String(Boolean(info.locked)));
      if (document.activeElement !== $("limitInput")) $("limitInput").value = String(info.max_participants);
    }
  }
}
