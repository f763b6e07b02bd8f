/**
 * Room API Web SDK: connect, join a room, publish and play streams, chat.
 *
 * One ES module, no build step.  It touches no DOM except the display
 * elements it is handed (it creates and owns one <video> inside each).
 * The wire names mirror docs/protocol.md and rooms/protocol.py.  The exported
 * names (PROTOCOL_VERSION, SESSION_STATUS, ROOM_EVENT, STREAM_STATUS, QUALITY, ERROR_CODE)
 * are the Python SDK's (roomapi/constants.py) too: docs/protocol.md, "SDK names";
 * tests/test_sdk_vocabulary.py keeps them equal.
 *
 *   import {connect, SESSION_STATUS, ROOM_EVENT, STREAM_STATUS} from "/static/rooms/roomapi.js";
 *   connect({urlServer: "wss://host:8443", username: "alice"})
 *     .on(SESSION_STATUS.ESTABLISHED, (session) => {
 *       session.join({name: "room-1"}).on(ROOM_EVENT.STATE, (room) => room.publish({display}));
 *     });
 *
 * @module roomapi
 */

/** Protocol version spoken by this SDK (the "version" of hello). */
export const PROTOCOL_VERSION = 1;

/**
 * Statuses of a connection (a session). Values equal their names.
 * NEW and PENDING are the SDK's own; ESTABLISHED and FAILED answer hello; RECONNECTING: the socket dropped
 * while in a room and the SDK is resuming (ESTABLISHED again when resumed, not emitted twice);
 * DISCONNECTED follows the final close.
 */
export const SESSION_STATUS = Object.freeze({
  NEW: "NEW",
  PENDING: "PENDING",
  ESTABLISHED: "ESTABLISHED",
  RECONNECTING: "RECONNECTING",
  FAILED: "FAILED",
  DISCONNECTED: "DISCONNECTED",
});

/**
 * Events of a room handle. Values equal their names.
 * STATE: joined (the room and the others). JOINED, LEFT, PARTICIPANT_UPDATED: another participant joined,
 * left, or dropped / resumed (one each, also when a big room batches them). PRESENCE: a batched presence
 * event was applied, after its JOINED/LEFT/PARTICIPANT_UPDATED (callback(viewers): the audience count, also
 * room.viewers()). PUBLISHED, UNPUBLISHED, STREAM_UPDATED: a stream started, ended, or changed
 * its mute flags. ROOM_UPDATED: locked, unlocked or resized. MESSAGE: a message to everyone or to you.
 * ACTIVE_SPEAKERS: who speaks changed (callback(speakers): [{stream, login}], loudest first); also
 * right after STATE when someone speaks as you join, and after RECONNECTED when it changed meanwhile.
 * CLOSED: the room was finalized, or you left. KICKED: a moderator removed you. FAILED: the join was
 * refused (the Python SDK raises instead, and emits FAILED when one of your streams fails).
 * RECONNECTING: the connection dropped and the SDK is resuming the room; RECONNECTED: resumed (published
 * and played streams are being re-established on the same LocalStream / PlayingStream objects).
 */
export const ROOM_EVENT = Object.freeze({
  STATE: "STATE",
  JOINED: "JOINED",
  LEFT: "LEFT",
  PUBLISHED: "PUBLISHED",
  UNPUBLISHED: "UNPUBLISHED",
  STREAM_UPDATED: "STREAM_UPDATED",
  PARTICIPANT_UPDATED: "PARTICIPANT_UPDATED",
  PRESENCE: "PRESENCE",
  ROOM_UPDATED: "ROOM_UPDATED",
  CLOSED: "CLOSED",
  KICKED: "KICKED",
  FAILED: "FAILED",
  MESSAGE: "MESSAGE",
  RECONNECTING: "RECONNECTING",
  RECONNECTED: "RECONNECTED",
  ACTIVE_SPEAKERS: "ACTIVE_SPEAKERS",
});

/**
 * The video quality a player wants from a simulcast stream (play({quality}), playing.setQuality()).
 * LOW, MEDIUM, HIGH cap the layer; AUTO follows the size of the video element (and the player's link).
 */
export const QUALITY = Object.freeze({
  LOW: "low",
  MEDIUM: "medium",
  HIGH: "high",
  AUTO: "auto",
});

/**
 * The camera's simulcast layers (publish({simulcast: true})): rids lowest first, as docs/protocol.md requires.
 * @type {RTCRtpEncodingParameters[]}
 */
const SIMULCAST_ENCODINGS = [
  {rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000},
  {rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000},
  {rid: "f", maxBitrate: 1_500_000},
];

/** The quality "auto" asks for, from the rendered width of the video element (CSS px x devicePixelRatio). */
function autoQuality(element) {
  const width = element ? element.clientWidth * (window.devicePixelRatio || 1) : 0;
  if (width <= 400) return QUALITY.LOW;
  if (width <= 800) return QUALITY.MEDIUM;
  return QUALITY.HIGH;
}

/**
 * Statuses of a published stream (NEW, PENDING, PUBLISHING, UNPUBLISHED, FAILED) or of a playback
 * (NEW, PENDING, PLAYING, STOPPED, UNPUBLISHED, FAILED). Values equal their names. NEW: not yet offered.
 */
export const STREAM_STATUS = Object.freeze({
  NEW: "NEW",
  PENDING: "PENDING",
  PUBLISHING: "PUBLISHING",
  UNPUBLISHED: "UNPUBLISHED",
  PLAYING: "PLAYING",
  STOPPED: "STOPPED",
  FAILED: "FAILED",
});

/**
 * Error codes (the `code` of a rejected promise or of FAILED info): the server's stable codes
 * (docs/protocol.md, "Errors"), then the SDK's own (last four).
 */
export const ERROR_CODE = Object.freeze({
  BAD_JSON: "bad_json",
  BAD_FRAME: "bad_frame",
  FRAME_TOO_LARGE: "frame_too_large",
  UNKNOWN_TYPE: "unknown_type",
  MISSING_FIELD: "missing_field",
  INVALID_FIELD: "invalid_field",
  UNSUPPORTED_VERSION: "unsupported_version",
  INVALID_USERNAME: "invalid_username",
  INVALID_TOKEN: "invalid_token",
  TOKEN_REVOKED: "token_revoked",
  NOT_ESTABLISHED: "not_established",
  ALREADY_ESTABLISHED: "already_established",
  NOT_JOINED: "not_joined",
  ALREADY_JOINED: "already_joined",
  LOGIN_TAKEN: "login_taken",
  ROOM_FULL: "room_full",
  ROOM_LOCKED: "room_locked",
  ROOM_NOT_FOUND: "room_not_found",
  ROOM_EXISTS: "room_exists",
  ROOM_FINISHED: "room_finished",
  MESSAGE_TOO_LARGE: "message_too_large",
  UNKNOWN_RECIPIENT: "unknown_recipient",
  STREAM_NOT_FOUND: "stream_not_found",
  STREAM_NOT_PUBLISHING: "stream_not_publishing",
  ALREADY_PUBLISHING: "already_publishing",
  PLAY_NOT_FOUND: "play_not_found",
  PARTICIPANT_NOT_FOUND: "participant_not_found",
  INVALID_SDP: "invalid_sdp",
  MEDIA_UNAVAILABLE: "media_unavailable",
  MEDIA_FAILED: "media_failed",
  TOO_MANY_PUBLICATIONS: "too_many_publications",
  TOO_MANY_PLAYS: "too_many_plays",
  TOO_MANY_PENDING: "too_many_pending",
  TOO_MANY_CANDIDATES: "too_many_candidates",
  CANDIDATE_REFUSED: "candidate_refused",
  FORBIDDEN: "forbidden",
  RATE_LIMITED: "rate_limited",
  INTERNAL_ERROR: "internal_error",
  // The SDK's own: the socket closed, a reply did not come, the socket could not open, a bad server URL.
  DISCONNECTED: "disconnected",
  TIMEOUT: "timeout",
  CONNECTION_ERROR: "connection_error",
  BAD_URL: "bad_url",
  ICE_FAILED: "ice_failed",
});

// --- Wire types (docs/protocol.md, "Objects") ---------------------------------

/**
 * @typedef {Object} WireRoom
 * @property {number} id
 * @property {string} name
 * @property {boolean} record
 * @property {boolean} locked
 * @property {number} max_participants
 * @property {string|null} created_at
 * @property {number} [viewers] the audience count (in state; kept current by presence events)
 */

/**
 * @typedef {Object} WireStream
 * @property {string} id            public stream id
 * @property {string} name
 * @property {"camera"|"screen"} kind
 * @property {string} owner         login of the publisher
 * @property {"PENDING"|"PUBLISHING"|"UNPUBLISHED"|"FAILED"} status
 * @property {boolean} audio_muted
 * @property {boolean} video_muted
 * @property {boolean} has_audio
 * @property {boolean} has_video
 * @property {string} audio_codec
 * @property {string} video_codec
 * @property {boolean} record
 */

/**
 * @typedef {Object} WireParticipant
 * @property {string} login
 * @property {"connected"|"disconnected"|"left"} state
 * @property {string} role
 * @property {string|null} joined_at
 * @property {WireStream[]} streams  live (PUBLISHING) streams
 * @property {string[]} [grants]     only on "self" in STATE
 */

/**
 * @typedef {Object} WireMessage
 * @property {number} id
 * @property {string|null} from     sender login, null for the server
 * @property {string[]|null} to     null for everyone, else recipients' logins
 * @property {string} text
 * @property {string|null} sent_at
 */

/**
 * @typedef {Object} WireState  the reply to join
 * @property {WireRoom} room
 * @property {WireParticipant} self
 * @property {WireParticipant[]} participants  the others
 * @property {WireMessage[]} history
 * @property {string[]} [active_speakers]  the ids of the streams speaking now, loudest first
 * @property {boolean} resumed
 */

/**
 * @typedef {Object} ErrorInfo  an "error" (or "failed") event
 * @property {string} code      a stable ErrorCode, e.g. "room_full"
 * @property {string} message   human text
 */

/**
 * @typedef {Object} ConnectOptions
 * @property {string} urlServer   ws(s)://host[:port][/ws/]; http(s) is accepted too
 * @property {string} [username]  a login (guest mode)
 * @property {string} [token]     a signed join token instead of a username
 * @property {RTCIceServer[]} [iceServers]  for every peer connection (default: the server's, from "established")
 * @property {"all"|"relay"} [iceTransportPolicy]  "relay": TURN relay candidates only (default "all")
 * @property {number} [timeout]   ms a request may wait for its reply (default 20000)
 * @property {string} [resumeSecret]  a room's resumeSecret(): the next join resumes that participant after a drop
 * @property {number} [reconnectAttempts]  tries to resume after an unexpected drop (default 8; 0: never)
 * @property {number} [reconnectDelay]  ms before the first try, doubled before each next one up to 5000 (default 500)
 */

/**
 * @typedef {Object} PublishOptions
 * @property {HTMLElement} [display]  element that receives the local preview <video>
 * @property {MediaStreamConstraints} [constraints]  default {audio: true, video: true}
 * @property {boolean} [record]
 * @property {boolean} [receiveVideo]  accepted for compatibility; publishing is send-only
 * @property {boolean} [receiveAudio]  accepted for compatibility; publishing is send-only
 * @property {boolean} [screen]        publish getDisplayMedia (kind "screen") instead of the camera
 * @property {MediaStream} [mediaStream]  publish this stream instead of capturing one
 * @property {boolean} [simulcast]  send the camera in three layers (1/4, 1/2, full resolution); the relay gives
 *   each player one and pauses the layers nobody wants (layers_wanted)
 */

/**
 * @typedef {Object} MessageEvent
 * @property {{name: function(): string}} from
 * @property {string} text
 * @property {string[]|null} to
 * @property {boolean} private
 * @property {number} id
 * @property {string|null} sentAt
 */

// --- Helpers ---------------------------------------------------------------------

/** A tiny event emitter whose on() chains. */
/** @param {string} text @returns {number} its size in UTF-8 bytes */
function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

class Emitter {
  constructor() {
    /** @type {Map<string, Function[]>} */
    this._handlers = new Map();
  }

  /**
   * Add a handler for an event; returns this so calls chain.
   * @param {string} event
   * @param {Function} fn
   * @returns {this}
   */
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, []);
    this._handlers.get(event).push(fn);
    return this;
  }

  /**
   * Remove a handler (or all handlers of an event).
   * @param {string} event
   * @param {Function} [fn]
   * @returns {this}
   */
  off(event, fn) {
    if (!fn) this._handlers.delete(event);
    else this._handlers.set(event, (this._handlers.get(event) || []).filter((h) => h !== fn));
    return this;
  }

  _emit(event, ...args) {
    for (const fn of [...(this._handlers.get(event) || [])]) {
      try {
        fn(...args);
      } catch (err) {
        console.error(`roomapi: ${event} handler failed`, err);
      }
    }
  }
}

/** The id of a field that may be an id or an object with an id. */
function idOf(value) {
  if (value && typeof value === "object") return value.id;
  return value;
}

/** Normalise the server URL: ws(s) scheme and the /ws/ endpoint. */
function socketUrl(urlServer) {
  let url = (urlServer || "").trim();
  if (!url) url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
  url = url.replace(/^http:/i, "ws:").replace(/^https:/i, "wss:");
  const parsed = new URL(url);
  if (parsed.pathname === "" || parsed.pathname === "/") parsed.pathname = "/ws/";
  return parsed.toString();
}

/** Create the <video> the SDK owns inside a display element. */
function attachVideo(display, mediaStream, {muted}) {
  if (!display) return null;
  for (const old of display.querySelectorAll("video[data-roomapi]")) old.remove();
  const video = document.createElement("video");
  video.dataset.roomapi = "true";
  video.className = "roomapi-video";
  video.autoplay = true;
  video.playsInline = true;
  video.muted = muted;
  video.setAttribute("playsinline", "");
  video.srcObject = mediaStream;
  display.appendChild(video);
  const start = () =>
    video.play().catch((err) => {
      if (err && err.name === "NotAllowedError" && !video.muted) {
        // Autoplay with sound needs a user gesture: play muted rather than not at all.
        video.muted = true;
        video.play().catch(() => {});
      }
    });
  start();
  return video;
}

function detachVideo(video) {
  if (!video) return;
  try {
    video.pause();
  } catch (_) {
    /* already gone */
  }
  video.srcObject = null;
  video.remove();
}

/**
 * Candidate handling shared by publish and play: local candidates are
 * buffered until the server's answer names the peer connection ("pc").
 */
class Negotiation {
  constructor(connection, iceServers) {
    this.connection = connection;
    this.relayOnly = connection._options.iceTransportPolicy === "relay";
    this.pc = new RTCPeerConnection({iceServers: iceServers || [], iceTransportPolicy: this.relayOnly ? "relay" : "all"});
    this.pcId = null;
    this.pending = [];
    this.relayCandidates = 0;
    this.iceErrors = [];
    this.pc.addEventListener("icecandidateerror", (event) => {
      this.iceErrors.push(`${event.errorCode} ${event.errorText || ""}`.trim());
    });
    this.pc.onicecandidate = (event) => {
      if (event.candidate && event.candidate.type === "relay") this.relayCandidates += 1;
      const candidate = event.candidate
        ? {candidate: event.candidate.candidate, sdpMid: event.candidate.sdpMid, sdpMLineIndex: event.candidate.sdpMLineIndex}
        : null;
      if (this.pcId === null) this.pending.push(candidate);
      else this._sendCandidate(candidate);
    };
  }

  _sendCandidate(candidate) {
    if (!candidate || !candidate.candidate) candidate = null;
    this.connection._request("ice", {pc: this.pcId, candidate}).catch(() => {});
  }

  /**
   * Relay-only ICE: wait (at most 10 s) for the first relay candidate or the end of gathering; without one
   * (TURN refused the credential or cannot be reached) reject with ICE_FAILED instead of letting the server time out.
   */
  async relayReady() {
    if (!this.relayOnly) return;
    const deadline = Date.now() + 10000;
    while (!this.relayCandidates && this.pc.iceGatheringState !== "complete" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (!this.relayCandidates) {
      const why = this.iceErrors.length ? ` (${this.iceErrors.join("; ")})` : "";
      throw {
        code: ERROR_CODE.ICE_FAILED,
        message: `relay-only ICE gathered no relay candidate: the TURN server refused the credential or cannot be reached${why}`,
      };
    }
  }

  /** The answer arrived: remember the pc id, flush candidates, apply the SDP. */
  async answered(pcId, sdp) {
    this.pcId = pcId;
    const buffered = this.pending;
    this.pending = [];
    await this.pc.setRemoteDescription({type: "answer", sdp});
    for (const candidate of buffered) this._sendCandidate(candidate);
  }

  close() {
    try {
      this.pc.close();
    } catch (_) {
      /* closed */
    }
  }
}

// --- Streams -----------------------------------------------------------------------

/** A stream this client publishes (room.publish). */
class LocalStream extends Emitter {
  /**
   * @param {Room} room
   * @param {PublishOptions} options
   */
  constructor(room, options) {
    super();
    this._room = room;
    this._options = options || {};
    this._kind = this._options.screen ? "screen" : "camera";
    this._status = STREAM_STATUS.NEW;
    this._id = null;
    this._name = null;
    this._audioMuted = false;
    this._videoMuted = false;
    this._media = null;
    this._video = null;
    this._negotiation = null;
    this._ended = false;
    this._info = null;
  }

  /** @returns {string|null} the server's stream id */
  id() {
    return this._id;
  }

  /** @returns {string} the stream name (the id until the server names it) */
  name() {
    return this._name || this._id || "";
  }

  /** @returns {"camera"|"screen"} */
  kind() {
    return this._kind;
  }

  /** @returns {string} a STREAM_STATUS value */
  status() {
    return this._status;
  }

  /** @returns {ErrorInfo|null} why the stream failed, if it did */
  getInfo() {
    return this._info;
  }

  /** @returns {MediaStream|null} the captured media */
  getMediaStream() {
    return this._media;
  }

  /** @returns {Promise<RTCStatsReport|null>} WebRTC statistics of the publication */
  getStats() {
    return this._negotiation ? this._negotiation.pc.getStats() : Promise.resolve(null);
  }

  /** @returns {boolean} */
  isAudioMuted() {
    return this._audioMuted;
  }

  /** @returns {boolean} */
  isVideoMuted() {
    return this._videoMuted;
  }

  /** Mute the microphone (locally and for everyone). */
  muteAudio() {
    return this._mute({audio: true});
  }

  /** Unmute the microphone. */
  unmuteAudio() {
    return this._mute({audio: false});
  }

  /** Mute the camera or screen (locally and for everyone). */
  muteVideo() {
    return this._mute({video: true});
  }

  /** Unmute the camera or screen. */
  unmuteVideo() {
    return this._mute({video: false});
  }

  _mute(flags) {
    if ("audio" in flags) {
      this._audioMuted = flags.audio;
      if (this._media) for (const t of this._media.getAudioTracks()) t.enabled = !flags.audio;
    }
    if ("video" in flags) {
      this._videoMuted = flags.video;
      if (this._media) for (const t of this._media.getVideoTracks()) t.enabled = !flags.video;
    }
    if (!this._id || this._ended) return Promise.resolve();
    return this._room._connection._request("mute", {stream: this._id, ...flags}).catch((err) => {
      console.warn("roomapi: mute failed", err);
    });
  }

  /**
   * Send ``track`` instead of the published track of the same kind (a camera or microphone switch mid-call),
   * without renegotiating: the others keep playing the same stream and decode the new picture or sound.
   * The stream's MediaStream (the preview) takes the new track and the mute flag carries over; the old track
   * is stopped (unless the application passed its own ``mediaStream``). Before the stream is published (or
   * while it reconnects) only the MediaStream changes, and the next negotiation sends the new track.
   * @param {MediaStreamTrack} track  an "audio" or "video" track
   * @returns {Promise<void>}
   */
  async replaceTrack(track) {
    if (this._ended) throw {code: ERROR_CODE.INVALID_FIELD, message: "the stream is not live"};
    const media = this._media;
    const old = media ? media.getTracks().find((t) => t.kind === track.kind) || null : null;
    track.enabled = track.kind === "audio" ? !this._audioMuted : !this._videoMuted;
    const pc = this._negotiation && this._negotiation.pc;
    if (pc) {
      const transceiver = pc.getTransceivers().find((t) => (t.sender.track || t.receiver.track).kind === track.kind);
      if (!transceiver) throw {code: ERROR_CODE.INVALID_FIELD, message: `the stream sends no ${track.kind}`};
      await transceiver.sender.replaceTrack(track);
    }
    if (media) {
      if (old) media.removeTrack(old);
      media.addTrack(track);
    }
    if (track.kind === "video") track.addEventListener("ended", () => this.stop());
    if (old && !this._options.mediaStream) old.stop();
  }

  /** Stop publishing: UNPUBLISHED follows from the server. */
  stop() {
    if (this._ended) return Promise.resolve();
    const id = this._id;
    this._release();
    if (!id) {
      this._setStatus(STREAM_STATUS.UNPUBLISHED);
      return Promise.resolve();
    }
    return this._room._connection
      ._request("unpublish", {stream: id})
      .catch(() => {})
      .then(() => this._setStatus(STREAM_STATUS.UNPUBLISHED));
  }

  async _start() {
    const opts = this._options;
    this._setStatus(STREAM_STATUS.PENDING);
    try {
      if (!this._media) await this._capture();
      if (this._ended) {
        this._stopTracks();
        return;
      }
      this._negotiation = new Negotiation(this._room._connection, this._room._connection._iceServers);
      const pc = this._negotiation.pc;
      for (const track of this._media.getTracks()) {
        const init = {direction: "sendonly", streams: [this._media]};
        if (opts.simulcast && track.kind === "video") init.sendEncodings = SIMULCAST_ENCODINGS.map((e) => ({...e}));
        const transceiver = pc.addTransceiver(track, init);
        if (init.sendEncodings) this._simulcastSender = transceiver.sender;
      }
      pc.addEventListener("connectionstatechange", () => {
        if (pc.connectionState !== "failed" || !this._negotiation || this._negotiation.pc !== pc) return;
        if (this._room._connection.status() === SESSION_STATUS.RECONNECTING) return;
        this._fail({code: ERROR_CODE.MEDIA_FAILED, message: "the media connection failed"});
      });
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await this._negotiation.relayReady();
      const answer = await this._room._connection._request("publish", {
        kind: this._kind,
        sdp: pc.localDescription.sdp,
        record: Boolean(opts.record),
      });
      if (this._ended) return;
      this._id = idOf(answer.stream) || answer.pc;
      if (answer.stream && typeof answer.stream === "object") this._name = answer.stream.name;
      this._room._localStreams.set(this._id, this);
      await this._negotiation.answered(answer.pc || this._id, answer.sdp);
      this._room._connection._replayStatus(this._id, this);
    } catch (err) {
      if (this._room._connection.status() === SESSION_STATUS.RECONNECTING) return this._suspend(); // dropped again
      this._fail(err && err.code ? err : {code: ERROR_CODE.MEDIA_FAILED, message: String((err && err.message) || err)});
    }
  }

  /** Capture the camera, the screen or take the given MediaStream, and show it (once per stream). */
  async _capture() {
    const opts = this._options;
    if (opts.mediaStream) {
      this._media = opts.mediaStream;
    } else if (opts.screen) {
      const video = (opts.constraints && opts.constraints.video) || true;
      this._media = await navigator.mediaDevices.getDisplayMedia({video, audio: false});
    } else {
      this._media = await navigator.mediaDevices.getUserMedia(opts.constraints || {audio: true, video: true});
    }
    if (this._ended) return;
    for (const track of this._media.getVideoTracks()) {
      track.addEventListener("ended", () => this.stop());
    }
    this._video = attachVideo(opts.display, this._media, {muted: true});
    if (this._video) this._video.roomapiStream = this;
  }

  // --- re-established after a resume (docs/protocol.md, "Reconnection in the SDKs") ---

  /** The session dropped: close the peer connection, keep the captured media and the element (PENDING). */
  _suspend() {
    if (this._negotiation) this._negotiation.close();
    this._negotiation = null;
    if (this._id) this._room._localStreams.delete(this._id);
    this._id = null;
    this._setStatus(STREAM_STATUS.PENDING);
  }

  /** The room resumed: publish the same media again (a new stream id), with the same mute flags. */
  async _restart() {
    await this._start();
    if (this._id && (this._audioMuted || this._videoMuted)) {
      this._room._connection._request("mute", {stream: this._id, audio: this._audioMuted, video: this._videoMuted}).catch(() => {});
    }
  }

  /** @returns {string[]|null} the rids of the simulcast layers being sent (null without simulcast) */
  activeLayers() {
    if (!this._simulcastSender) return null;
    return this._simulcastSender.getParameters().encodings.filter((e) => e.active !== false).map((e) => e.rid);
  }

  /**
   * A layers_wanted event: pause the simulcast layers nobody plays, resume the wanted ones (dynacast).
   * Changes are applied one at a time, in order (setParameters needs the latest getParameters).
   */
  _layersWanted(rids) {
    const sender = this._simulcastSender;
    if (!sender || !Array.isArray(rids)) return Promise.resolve();
    this._layersChain = (this._layersChain || Promise.resolve()).then(async () => {
      if (this._ended) return;
      const parameters = sender.getParameters();
      if (!parameters.encodings) return;
      for (const encoding of parameters.encodings) encoding.active = rids.includes(encoding.rid);
      try {
        await sender.setParameters(parameters);
      } catch (err) {
        console.warn("roomapi: pausing simulcast layers failed", err);
      }
    });
    return this._layersChain;
  }

  /** A stream_status event from the server. */
  _serverStatus(event) {
    if (event.stream && typeof event.stream === "object" && event.stream.name) this._name = event.stream.name;
    if (event.status === STREAM_STATUS.FAILED) {
      this._fail({code: ERROR_CODE.MEDIA_FAILED, message: event.reason || "the stream failed"});
    } else if (event.status === STREAM_STATUS.UNPUBLISHED) {
      this._release();
      this._setStatus(STREAM_STATUS.UNPUBLISHED);
    } else {
      this._setStatus(event.status);
    }
  }

  _fail(info) {
    if (this._status === STREAM_STATUS.FAILED || this._status === STREAM_STATUS.UNPUBLISHED) return;
    this._info = info;
    const id = this._id;
    this._release();
    if (id) this._room._connection._request("unpublish", {stream: id}).catch(() => {});
    this._setStatus(STREAM_STATUS.FAILED);
  }

  _setStatus(status) {
    if (this._status === status) return;
    const terminal = [STREAM_STATUS.UNPUBLISHED, STREAM_STATUS.FAILED];
    if (terminal.includes(this._status)) return;
    this._status = status;
    this._emit(status, this);
  }

  _stopTracks() {
    if (this._media && !this._options.mediaStream) for (const t of this._media.getTracks()) t.stop();
  }

  _release() {
    this._ended = true;
    if (this._negotiation) this._negotiation.close();
    this._stopTracks();
    detachVideo(this._video);
    this._video = null;
    if (this._id) this._room._localStreams.delete(this._id);
  }
}

/** A stream another participant publishes; play() shows it. */
class RemoteStream {
  /**
   * @param {Participant} participant
   * @param {WireStream} data
   */
  constructor(participant, data) {
    this._participant = participant;
    this._data = data;
  }

  /** @returns {string} */
  id() {
    return this._data.id;
  }

  /** @returns {string} */
  name() {
    return this._data.name || this._data.id;
  }

  /** @returns {"camera"|"screen"} */
  kind() {
    return this._data.kind;
  }

  /** @returns {string} the server status of the publication */
  status() {
    return this._data.status;
  }

  /** @returns {Participant} */
  participant() {
    return this._participant;
  }

  /** @returns {boolean} */
  isAudioMuted() {
    return Boolean(this._data.audio_muted);
  }

  /** @returns {boolean} */
  isVideoMuted() {
    return Boolean(this._data.video_muted);
  }

  /** @returns {WireStream} the wire object */
  toJSON() {
    return this._data;
  }

  /**
   * Play this stream inside ``display``.
   * @param {HTMLElement} display
   * @param {{quality?: string}} [options]  quality: a QUALITY value (default AUTO)
   * @returns {PlayingStream}
   */
  play(display, options) {
    const room = this._participant._room;
    const playing = new PlayingStream(room, this, display, options);
    room._playing.add(playing);
    playing._start();
    return playing;
  }
}

/**
 * A playback of a remote stream (stream.play / participant.play).
 * Emits its STREAM_STATUS values, and "QUALITY" (callback(playing, quality)) when the relay forwards another
 * simulcast layer.
 */
class PlayingStream extends Emitter {
  constructor(room, stream, display, options) {
    super();
    this._room = room;
    this._stream = stream;
    this._display = display;
    this._wantedQuality = (options && options.quality) || QUALITY.AUTO;
    this._sentQuality = null;
    this._quality = null;
    this._resize = null;
    this._status = STREAM_STATUS.NEW;
    this._playId = null;
    this._video = null;
    this._negotiation = null;
    this._ended = false;
    this._info = null;
  }

  /** @returns {string|null} the server's play id */
  id() {
    return this._playId;
  }

  /** @returns {string} the played stream's name */
  name() {
    return this._stream.name();
  }

  /** @returns {RemoteStream} */
  stream() {
    return this._stream;
  }

  /** @returns {string} a STREAM_STATUS value */
  status() {
    return this._status;
  }

  /** @returns {ErrorInfo|null} */
  getInfo() {
    return this._info;
  }

  /** @returns {HTMLVideoElement|null} the element the SDK created */
  getVideo() {
    return this._video;
  }

  /** @returns {Promise<RTCStatsReport|null>} WebRTC statistics of the playback */
  getStats() {
    return this._negotiation ? this._negotiation.pc.getStats() : Promise.resolve(null);
  }

  /** @returns {boolean} */
  isAudioMuted() {
    return this._stream.isAudioMuted();
  }

  /** @returns {boolean} */
  isVideoMuted() {
    return this._stream.isVideoMuted();
  }

  /** @returns {string|null} the layer the relay forwards ("low", "medium", "high"); null before video */
  quality() {
    return this._quality;
  }

  /** @returns {string} the QUALITY asked for */
  wantedQuality() {
    return this._wantedQuality;
  }

  /**
   * Ask for another quality while playing (AUTO: from the video element's size, followed when it is resized).
   * @param {string} quality  a QUALITY value
   * @returns {Promise<void>}
   */
  setQuality(quality) {
    this._wantedQuality = quality;
    return this._sendQuality();
  }

  /** The quality to send: the wanted one, or for AUTO the element's. */
  _qualityToSend() {
    if (this._wantedQuality !== QUALITY.AUTO) return this._wantedQuality;
    return autoQuality(this._video || this._display);
  }

  _sendQuality() {
    const quality = this._qualityToSend();
    if (!this._playId || this._ended || quality === this._sentQuality) return Promise.resolve();
    this._sentQuality = quality;
    return this._room._connection._request("set_quality", {play: this._playId, quality}).then(
      () => undefined,
      (err) => console.warn("roomapi: set_quality failed", err),
    );
  }

  _watchSize() {
    if (this._resize || typeof ResizeObserver === "undefined") return;
    const target = this._video || this._display;
    if (!target) return;
    this._resize = new ResizeObserver(() => {
      if (this._wantedQuality === QUALITY.AUTO) this._sendQuality();
    });
    this._resize.observe(target);
  }

  /** Stop playing; STOPPED follows. */
  stop() {
    if (this._ended) return Promise.resolve();
    const id = this._playId;
    this._release();
    const done = () => this._setStatus(STREAM_STATUS.STOPPED);
    if (!id) {
      done();
      return Promise.resolve();
    }
    return this._room._connection._request("stop", {play: id}).catch(() => {}).then(done);
  }

  async _start() {
    this._setStatus(STREAM_STATUS.PENDING);
    try {
      this._negotiation = new Negotiation(this._room._connection, this._room._connection._iceServers);
      const pc = this._negotiation.pc;
      const media = new MediaStream();
      pc.addTransceiver("audio", {direction: "recvonly"});
      pc.addTransceiver("video", {direction: "recvonly"});
      pc.ontrack = (event) => {
        media.addTrack(event.track);
        if (!this._video && !this._ended) {
          this._video = attachVideo(this._display, media, {muted: false});
          // Let code holding only the element find its playback (tests, custom UIs).
          if (this._video) this._video.roomapiStream = this;
          if (this._video) this._video.addEventListener("playing", () => this._setStatus(STREAM_STATUS.PLAYING));
        }
      };
      pc.addEventListener("connectionstatechange", () => {
        if (pc.connectionState !== "failed" || !this._negotiation || this._negotiation.pc !== pc) return;
        if (this._room._connection.status() === SESSION_STATUS.RECONNECTING) return;
        this._fail({code: ERROR_CODE.MEDIA_FAILED, message: "the media connection failed"});
      });
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await this._negotiation.relayReady();
      this._sentQuality = this._qualityToSend();
      const answer = await this._room._connection._request("play", {
        stream: this._stream.id(),
        sdp: pc.localDescription.sdp,
        quality: this._sentQuality,
      });
      if (this._ended) {
        const playId = idOf(answer.play) || answer.pc;
        if (playId) this._room._connection._request("stop", {play: playId}).catch(() => {});
        return;
      }
      this._playId = idOf(answer.play) || answer.pc;
      this._room._playingById.set(this._playId, this);
      await this._negotiation.answered(answer.pc || this._playId, answer.sdp);
      this._room._connection._replayStatus(this._playId, this);
      this._watchSize();
      this._sendQuality();  // AUTO: the element may have been laid out since
    } catch (err) {
      if (this._room._connection.status() === SESSION_STATUS.RECONNECTING) return this._suspend(); // dropped again
      this._fail(err && err.code ? err : {code: ERROR_CODE.MEDIA_FAILED, message: String((err && err.message) || err)});
    }
  }

  /** A play_status event from the server. */
  _serverStatus(event) {
    const status = event.status;
    if (status === STREAM_STATUS.PLAYING) {
      if (event.quality && event.quality !== this._quality) {
        this._quality = event.quality;
        this._emit("QUALITY", this, event.quality);
      }
      this._setStatus(STREAM_STATUS.PLAYING);
    } else if (status === STREAM_STATUS.FAILED) {
      this._fail({code: ERROR_CODE.MEDIA_FAILED, message: event.reason || "the playback failed"});
    } else if (status === STREAM_STATUS.STOPPED || status === STREAM_STATUS.UNPUBLISHED) {
      this._release();
      this._setStatus(status);
    }
  }

  // --- re-established after a resume (docs/protocol.md, "Reconnection in the SDKs") ---

  /** The session dropped: close the peer connection and its element, keep the playback (PENDING). */
  _suspend() {
    if (this._negotiation) this._negotiation.close();
    this._negotiation = null;
    detachVideo(this._video);
    this._video = null;
    if (this._playId) this._room._playingById.delete(this._playId);
    this._playId = null;
    this._setStatus(STREAM_STATUS.PENDING);
  }

  /** The room resumed: play the same stream again (a new play id, a new element in the same display). */
  _restart(stream) {
    this._stream = stream;
    return this._start();
  }

  /** The played stream was unpublished (seen in the room's events). */
  _unpublished() {
    if (this._ended) return;
    this._release();
    this._setStatus(STREAM_STATUS.UNPUBLISHED);
  }

  _fail(info) {
    if (this._ended && this._status !== STREAM_STATUS.PENDING && this._status !== STREAM_STATUS.PLAYING) return;
    this._info = info;
    const id = this._playId;
    this._release();
    if (id) this._room._connection._request("stop", {play: id}).catch(() => {});
    this._setStatus(STREAM_STATUS.FAILED);
  }

  _setStatus(status) {
    if (this._status === status) return;
    const terminal = [STREAM_STATUS.STOPPED, STREAM_STATUS.UNPUBLISHED, STREAM_STATUS.FAILED];
    if (terminal.includes(this._status)) return;
    if (status === STREAM_STATUS.PLAYING && this._ended) return;
    this._status = status;
    this._emit(status, this);
  }

  _release() {
    this._ended = true;
    if (this._resize) this._resize.disconnect();
    this._resize = null;
    if (this._negotiation) this._negotiation.close();
    detachVideo(this._video);
    this._video = null;
    if (this._playId) this._room._playingById.delete(this._playId);
    this._room._playing.delete(this);
  }
}

// --- Participants and rooms ------------------------------------------------------------

/** Another participant of the room. */
class Participant {
  /**
   * @param {Room} room
   * @param {WireParticipant} data
   */
  constructor(room, data) {
    this._room = room;
    this._data = data;
    /** @type {Map<string, RemoteStream>} */
    this._streams = new Map();
    this._update(data);
  }

  _update(data) {
    this._data = {...this._data, ...data};
    if (Array.isArray(data.streams)) {
      const live = new Map();
      for (const s of data.streams) {
        const existing = this._streams.get(s.id);
        if (existing) existing._data = s;
        live.set(s.id, existing || new RemoteStream(this, s));
      }
      // Keep streams we learned of through "published" that a stale list lacks.
      for (const [id, s] of this._streams) if (!live.has(id) && s._data.status === "PUBLISHING" && data.state === "connected") live.set(id, s);
      this._streams = live;
    }
  }

  /** @returns {string} the participant's login */
  name() {
    return this._data.login;
  }

  /** @returns {string} "connected", "disconnected" or "left" */
  state() {
    return this._data.state;
  }

  /** @returns {string} the participant's role */
  role() {
    return this._data.role;
  }

  /** @returns {RemoteStream[]} the participant's live streams */
  getStreams() {
    return [...this._streams.values()];
  }

  /**
   * Play the participant's stream (the camera first, else its first stream).
   * @param {HTMLElement} display
   * @param {{kind?: "camera"|"screen", quality?: string}} [options]  quality: a QUALITY value (default AUTO)
   * @returns {PlayingStream|null} null when nothing is published
   */
  play(display, options) {
    const streams = this.getStreams();
    const kind = options && options.kind;
    const stream = kind ? streams.find((s) => s.kind() === kind) : streams.find((s) => s.kind() === "camera") || streams[0];
    return stream ? stream.play(display, options) : null;
  }

  /**
   * Send a private message to this participant.
   * @param {string} text
   * @returns {Promise<WireMessage>}
   */
  sendMessage(text) {
    return this._room.sendMessage(text, [this.name()]);
  }
}

/** A room this connection joined (connection.join). */
class Room extends Emitter {
  /**
   * @param {Connection} connection
   * @param {{name: string, record?: boolean, maxParticipants?: number}} options
   */
  constructor(connection, options) {
    super();
    this._connection = connection;
    this._options = options;
    this._name = options.name;
    /** @type {WireRoom|null} */
    this._data = null;
    /** @type {WireParticipant|null} */
    this._self = null;
    /** @type {Map<string, Participant>} */
    this._participants = new Map();
    /** @type {WireMessage[]} */
    this._history = [];
    this._historyMore = false;
    /** @type {Map<string, LocalStream>} */
    this._localStreams = new Map();
    this._activeSpeakers = [];
    /** @type {Set<LocalStream>} */
    this._published = new Set();
    /** @type {Set<PlayingStream>} */
    this._playing = new Set();
    /** @type {Map<string, PlayingStream>} */
    this._playingById = new Map();
    this._joined = false;
    this._closed = false;
    /** @type {Set<number>} ids of the messages seen (history and received), so a resume repeats none */
    this._messageIds = new Set();
  }

  /** @returns {string} the room name */
  name() {
    return this._name;
  }

  /** @returns {WireRoom|null} the room as the server described it */
  info() {
    return this._data;
  }

  /** @returns {{stream: string, login: string|null}[]} who speaks now, loudest first (ACTIVE_SPEAKERS) */
  activeSpeakers() {
    return this._activeSpeakers;
  }

  /** @returns {string} this client's login */
  selfName() {
    return this._self ? this._self.login : this._connection.username();
  }

  /** @returns {string[]} what this client may do (can_publish, can_chat, ...) */
  grants() {
    return (this._self && this._self.grants) || [];
  }

  /** @returns {Participant[]} the other participants */
  getParticipants() {
    return [...this._participants.values()];
  }

  /**
   * @param {string} name
   * @returns {Participant|undefined}
   */
  getParticipant(name) {
    return this._participants.get(name);
  }

  /** @returns {WireMessage[]} recent messages this client may see, oldest first */
  getHistory() {
    return this._history;
  }

  /**
   * Publish the camera (or the screen with ``screen: true``).
   * @param {PublishOptions|HTMLElement} options  an element means {display: element}
   * @returns {LocalStream}
   */
  publish(options) {
    if (options instanceof HTMLElement) options = {display: options};
    const stream = new LocalStream(this, options || {});
    this._published.add(stream);
    stream.on(STREAM_STATUS.UNPUBLISHED, () => this._published.delete(stream));
    stream.on(STREAM_STATUS.FAILED, () => this._published.delete(stream));
    stream._start();
    return stream;
  }

  /**
   * Send a message to everyone, or to the listed logins.
   * @param {string} text
   * @param {string[]} [to]
   * @returns {Promise<WireMessage>}
   */
  sendMessage(text, to) {
    const limit = this._connection._limits.max_message_bytes;
    if (limit !== undefined && utf8Length(text) > limit) {
      return Promise.reject({code: ERROR_CODE.MESSAGE_TOO_LARGE, message: `the message is larger than ${limit} bytes`});
    }
    const fields = {text};
    if (to && to.length) fields.to = to;
    return this._connection._request("send_message", fields).then((reply) => reply.message);
  }

  /**
   * A moderator action (docs/protocol.md, "Moderation"; needs the ``can_moderate`` grant): "lock", "unlock",
   * "set_max_participants" ({max_participants}), "mute" ({stream, audio?, video?}), "unpublish" ({stream}),
   * "kick" ({login}) or "finalize". The others see its effect as room events (ROOM_UPDATED, STREAM_UPDATED,
   * UNPUBLISHED, LEFT, CLOSED).
   * Rejects with {code, message}: FORBIDDEN for someone who may not moderate, STREAM_NOT_FOUND,
   * PARTICIPANT_NOT_FOUND, INVALID_FIELD ...
   * @param {"lock"|"unlock"|"set_max_participants"|"mute"|"unpublish"|"kick"|"finalize"} action
   * @param {{max_participants?: number, stream?: string, audio?: boolean, video?: boolean, login?: string}} [fields]
   * @returns {Promise<void>}
   */
  moderate(action, fields) {
    return this._connection._request("moderate", {...(fields || {}), action}).then(() => undefined);
  }

  /** @returns {boolean} true when older messages than getHistory()'s first exist (see loadHistory) */
  hasMoreHistory() {
    return this._historyMore;
  }

  /**
   * Fetch the page of messages just older than getHistory()'s first and put them at its front.
   * @param {number} [limit]  at most this many (the server's default when absent)
   * @returns {Promise<WireMessage[]>} the page, oldest first
   */
  loadHistory(limit) {
    const fields = {};
    const oldest = this._history.find((m) => m.id !== undefined && m.id !== null);
    if (oldest) fields.before = oldest.id;
    if (limit !== undefined) fields.limit = limit;
    return this._connection._request("history", fields).then((reply) => {
      const page = reply.messages || [];
      this._history.unshift(...page);
      this._historyMore = Boolean(reply.more);
      return page;
    });
  }

  /**
   * Leave the room: stops every publication and playback first.
   * @returns {Promise<void>}
   */
  leave() {
    const joined = this._joined;
    this._shutdown();
    if (!joined || this._connection._socketClosed()) return Promise.resolve();
    return this._connection._request("leave", {}).then(() => undefined);
  }

  _shutdown() {
    this._joined = false;
    this._closed = true;
    for (const s of [...this._published]) {
      s._release();
      s._setStatus(STREAM_STATUS.UNPUBLISHED);
    }
    for (const p of [...this._playing]) {
      p._release();
      p._setStatus(STREAM_STATUS.STOPPED);
    }
    if (this._connection._room === this) this._connection._room = null;
  }

  async _join() {
    const fields = {room: this._name, record: Boolean(this._options.record)};
    if (this._options.maxParticipants) fields.max_participants = this._options.maxParticipants;
    try {
      /** @type {WireState} */
      const state = await this._connection._request("join", fields);
      this._data = state.room;
      this._name = state.room.name;
      this._self = state.self;
      this._history = state.history || [];
      for (const m of this._history) this._messageIds.add(m.id);
      this._historyMore = Boolean(state.history_more);
      for (const p of state.participants || []) this._participants.set(p.login, new Participant(this, p));
      this._activeSpeakers = this._speakersOf(state.active_speakers);
      this._joined = true;
      this._emit(ROOM_EVENT.STATE, this);
      if (this._activeSpeakers.length) this._emit(ROOM_EVENT.ACTIVE_SPEAKERS, this._activeSpeakers);
    } catch (err) {
      this._closed = true;
      if (this._connection._room === this) this._connection._room = null;
      const info = err && err.code ? err : {code: ERROR_CODE.INTERNAL_ERROR, message: String(err)};
      this._emit(ROOM_EVENT.FAILED, this, info);
    }
  }

  /** @returns {string|null} this participant's secret for resuming after a drop (connect({resumeSecret})) */
  resumeSecret() {
    return (this._self && this._self.resume_secret) || null;
  }

  // --- resuming (docs/protocol.md, "Reconnection in the SDKs") ---

  /** The connection dropped: suspend every publication and playback; RECONNECTING. */
  _reconnecting() {
    for (const s of this._published) if (!s._ended) s._suspend();
    for (const p of this._playing) if (!p._ended) p._suspend();
    this._emit(ROOM_EVENT.RECONNECTING, this);
  }

  /** The join resumed: take the new state, publish and play again what was; RECONNECTED. */
  _resumed(state) {
    this._data = state.room;
    this._self = state.self;
    const present = new Map();
    for (const data of state.participants || []) {
      const known = this._participants.get(data.login);
      if (known) known._update(data);
      present.set(data.login, known || new Participant(this, data));
    }
    this._participants = present;
    for (const m of state.history || []) {
      if (this._messageIds.has(m.id)) continue;
      this._history.push(m);
      this._handle({type: "message", message: m}); // sent while we were away: MESSAGE, once
    }
    for (const s of [...this._published]) if (!s._ended) s._restart();
    for (const p of [...this._playing]) {
      if (p._ended) continue;
      const owner = this._participants.get(p._stream.participant().name());
      const stream = owner && owner._streams.get(p._stream.id());
      if (stream && stream.status() === STREAM_STATUS.PUBLISHING) p._restart(stream);
      else p._unpublished();
    }
    const before = this._activeSpeakers.map((s) => s.stream).join();
    this._activeSpeakers = this._speakersOf(state.active_speakers);
    this._emit(ROOM_EVENT.RECONNECTED, this);
    if (this._activeSpeakers.map((s) => s.stream).join() !== before) {
      this._emit(ROOM_EVENT.ACTIVE_SPEAKERS, this._activeSpeakers);
    }
  }

  /** @returns {{stream: string, login: string|null}[]} the speaking streams ``ids`` with their owners' logins */
  _speakersOf(ids) {
    const owners = new Map();
    for (const participant of this._participants.values()) {
      for (const stream of participant.getStreams()) owners.set(stream.id(), participant.name());
    }
    for (const id of this._localStreams.keys()) owners.set(id, this.selfName());
    return (ids || []).map((id) => ({stream: id, login: owners.get(id) || null}));
  }

  _participantFrom(data) {
    if (!data || data.login === this.selfName()) return null;
    let participant = this._participants.get(data.login);
    if (participant) participant._update(data);
    else {
      participant = new Participant(this, data);
      this._participants.set(data.login, participant);
    }
    return participant;
  }

  /** Route a room event from the server. */
  _handle(event) {
    switch (event.type) {
      case "joined": {
        const p = this._participantFrom(event.participant);
        if (p) this._emit(ROOM_EVENT.JOINED, p);
        break;
      }
      case "left": {
        const data = event.participant;
        if (!data) break;
        if (data.login === this.selfName()) {
          this._shutdown();
          this._emit(ROOM_EVENT.CLOSED, this, {code: "left", message: "you left the room"});
          break;
        }
        const p = this._participants.get(data.login) || new Participant(this, data);
        this._participants.delete(data.login);
        this._endPlaybacksOf(p.getStreams().map((s) => s.id()));
        p._update({...data, streams: []});
        this._emit(ROOM_EVENT.LEFT, p);
        break;
      }
      case "participant_updated": {
        const p = this._participantFrom(event.participant);
        if (p) this._emit(ROOM_EVENT.PARTICIPANT_UPDATED, p);
        break;
      }
      case "published": {
        if (!event.participant || event.participant.login === this.selfName()) break;
        const p = this._participantFrom(event.participant);
        if (!p) break;
        if (event.stream && !p._streams.has(event.stream.id)) p._streams.set(event.stream.id, new RemoteStream(p, event.stream));
        this._emit(ROOM_EVENT.PUBLISHED, p, p._streams.get(idOf(event.stream)));
        break;
      }
      case "unpublished": {
        if (!event.participant || event.participant.login === this.selfName()) break;
        const p = this._participants.get(event.participant.login);
        const streamId = idOf(event.stream);
        this._endPlaybacksOf([streamId]);
        if (!p) break;
        const stream = p._streams.get(streamId) || new RemoteStream(p, event.stream);
        if (event.stream && typeof event.stream === "object") stream._data = event.stream;
        p._streams.delete(streamId);
        this._emit(ROOM_EVENT.UNPUBLISHED, p, stream);
        break;
      }
      case "stream_updated": {
        if (!event.participant || event.participant.login === this.selfName()) break;
        const p = this._participants.get(event.participant.login);
        if (!p || !event.stream) break;
        const stream = p._streams.get(event.stream.id);
        if (stream) stream._data = event.stream;
        this._emit(ROOM_EVENT.STREAM_UPDATED, p, stream || new RemoteStream(p, event.stream));
        break;
      }
      case "active_speakers":
        this._activeSpeakers = this._speakersOf(event.streams);
        this._emit(ROOM_EVENT.ACTIVE_SPEAKERS, this._activeSpeakers);
        break;
      case "presence":
        this._handlePresence(event);
        break;
      case "room_updated":
        if (event.room) this._data = {...this._data, ...event.room}; // keeps the audience count
        this._emit(ROOM_EVENT.ROOM_UPDATED, this);
        break;
      case "room_closed":
        this._shutdown();
        this._emit(ROOM_EVENT.CLOSED, this, {code: event.reason || "closed", message: "the room was closed"});
        break;
      case "kicked":
        this._shutdown();
        this._emit(ROOM_EVENT.KICKED, this, {code: "kicked", message: event.reason || "you were removed from the room"});
        break;
      case "message": {
        const m = event.message;
        if (m) this._messageIds.add(m.id);
        if (!m || (m.from && m.from === this.selfName())) break;
        const sender = m.from || "server";
        this._emit(ROOM_EVENT.MESSAGE, {
          from: this._participants.get(sender) || {name: () => sender},
          text: m.text,
          to: m.to,
          private: m.to !== null && m.to !== undefined,
          id: m.id,
          sentAt: m.sent_at,
        });
        break;
      }
      default:
        break;
    }
  }

  /** @returns {number} the room's audience: how many viewers are present (counted, never listed) */
  viewers() {
    return (this._data && this._data.viewers) || 0;
  }

  /**
   * A batched presence event (docs/protocol.md, "Big rooms"): each change applied as if it came alone, one
   * JOINED / LEFT / PARTICIPANT_UPDATED per change that changes something (none about this participant), then
   * PRESENCE with the audience count.
   */
  _handlePresence(event) {
    for (const change of event.changes || []) {
      const data = change.participant;
      if (!data || !data.login || data.login === this.selfName()) continue;
      const known = this._participants.get(data.login);
      if (change.event === "joined" && known) {
        known._update(data); // listed already (a state that came after the join)
        continue;
      }
      if (change.event === "left" && !known) continue; // never listed: it left before our state
      this._handle({type: change.event, participant: data});
    }
    if (typeof event.viewers === "number" && this._data) this._data.viewers = event.viewers;
    this._emit(ROOM_EVENT.PRESENCE, this.viewers());
  }

  _endPlaybacksOf(streamIds) {
    for (const playing of [...this._playing]) {
      if (streamIds.includes(playing._stream.id())) playing._unpublished();
    }
  }
}

// --- Connection --------------------------------------------------------------------------

/** A session with the server (connect). */
class Connection extends Emitter {
  /** @param {ConnectOptions} options */
  constructor(options) {
    super();
    this._options = options;
    this._iceServers = options.iceServers || [];
    this._timeout = options.timeout || 20000;
    this._status = SESSION_STATUS.NEW;
    this._username = options.username || null;
    this._sessionId = null;
    this._info = null;
    this._nextRid = 1;
    /** @type {{max_message_bytes?: number, max_frame_bytes?: number}} size limits announced by `established` */
    this._limits = {};
    /** @type {Map<number, {resolve: Function, reject: Function, timer: number}>} */
    this._pending = new Map();
    /** @type {Map<string, object>} statuses that arrived before their answer */
    this._earlyStatus = new Map();
    /** @type {Room|null} */
    this._room = null;
    this._ws = null;
    this._pinger = null;
    this._reconnectAttempts = options.reconnectAttempts === undefined ? 8 : options.reconnectAttempts;
    this._reconnectDelay = options.reconnectDelay === undefined ? 500 : options.reconnectDelay;
    this._closing = false;
    this._resuming = false;
  }

  /** @returns {string} a SESSION_STATUS value */
  status() {
    return this._status;
  }

  /** @returns {string|null} the login the server confirmed */
  username() {
    return this._username;
  }

  /** @returns {string|null} the server's session id */
  id() {
    return this._sessionId;
  }

  /** @returns {ErrorInfo|null} why the session failed, if it did */
  getInfo() {
    return this._info;
  }

  /** @returns {Room|null} the room this connection is in */
  getRoom() {
    return this._room;
  }

  /**
   * Join (or create) a room.
   * @param {{name: string, record?: boolean, maxParticipants?: number}} options
   * @returns {Room}
   */
  join(options) {
    const room = new Room(this, options || {});
    this._room = room;
    // Let the caller chain .on(...) before any event fires.
    Promise.resolve().then(() => room._join());
    return room;
  }

  /** Close the session; DISCONNECTED follows. */
  disconnect() {
    this._closing = true;
    if (this._status === SESSION_STATUS.RECONNECTING) this._giveUp();
    if (this._room) this._room._shutdown();
    if (this._ws && this._ws.readyState <= WebSocket.OPEN) this._ws.close(1000, "disconnect");
    else this._setStatus(SESSION_STATUS.DISCONNECTED);
  }

  _open() {
    this._status = SESSION_STATUS.PENDING;
    let ws;
    try {
      ws = new WebSocket(socketUrl(this._options.urlServer));
    } catch (err) {
      this._info = {code: ERROR_CODE.BAD_URL, message: String(err.message || err)};
      Promise.resolve().then(() => this._setStatus(SESSION_STATUS.FAILED));
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      const hello = {version: PROTOCOL_VERSION};
      if (this._options.token) hello.token = this._options.token;
      if (this._options.username !== undefined || !this._options.token) hello.username = this._options.username || "";
      if (this._options.resumeSecret) hello.resume_secret = this._options.resumeSecret;
      this._request("hello", hello).then(
        (reply) => {
          this._username = reply.username;
          this._sessionId = reply.session;
          if (!this._options.iceServers) this._iceServers = Array.isArray(reply.ice_servers) ? reply.ice_servers : [];
          this._limits = reply.limits || {};
          this._startPinger(ws);
          this._setStatus(SESSION_STATUS.ESTABLISHED);
        },
        (err) => {
          this._info = err;
          this._setStatus(SESSION_STATUS.FAILED);
        },
      );
    };
    ws.onmessage = (frame) => this._receive(frame.data);
    ws.onerror = () => {
      if (!this._info) this._info = {code: ERROR_CODE.CONNECTION_ERROR, message: "the WebSocket connection failed"};
    };
    ws.onclose = (event) => {
      if (ws !== this._ws || this._resumeAfterDrop()) return;
      clearInterval(this._pinger);
      for (const [, waiter] of this._pending) {
        clearTimeout(waiter.timer);
        waiter.reject({code: ERROR_CODE.DISCONNECTED, message: "the connection closed"});
      }
      this._pending.clear();
      if (this._room) this._room._shutdown();
      if (this._status === SESSION_STATUS.ESTABLISHED) this._setStatus(SESSION_STATUS.DISCONNECTED);
      else if (this._status === SESSION_STATUS.PENDING) {
        if (!this._info) this._info = {code: ERROR_CODE.CONNECTION_ERROR, message: `the connection closed (${event.code})`};
        this._setStatus(SESSION_STATUS.FAILED);
      }
    };
  }

  _socketClosed() {
    return !this._ws || this._ws.readyState !== WebSocket.OPEN;
  }

  // --- reconnection (docs/protocol.md, "Reconnection in the SDKs") ---

  /** Keep-alive: a ping that gets no pong within the request timeout means a silent socket: drop it. */
  _startPinger(ws) {
    clearInterval(this._pinger);
    this._pinger = setInterval(() => {
      this._request("ping", {}).catch((err) => {
        if (err && err.code === ERROR_CODE.TIMEOUT && ws === this._ws) this._abandon(ws);
      });
    }, 10000);
  }

  /** Stop listening to a socket and treat it as closed (it may never say so itself). */
  _abandon(ws) {
    ws.onclose = null;
    ws.onmessage = null;
    try {
      ws.close();
    } catch (_) {
      /* closed */
    }
    if (ws !== this._ws || this._resumeAfterDrop()) return;
    this._rejectPending();
    if (this._room) this._room._shutdown();
    this._setStatus(SESSION_STATUS.DISCONNECTED);
  }

  _rejectPending() {
    for (const [, waiter] of this._pending) {
      clearTimeout(waiter.timer);
      waiter.reject({code: ERROR_CODE.DISCONNECTED, message: "the connection closed"});
    }
    this._pending.clear();
  }

  /**
   * The socket closed. True when the reconnection handles it: a try of the loop failed (the loop goes on), or
   * the drop was unexpected while in a room (the loop starts); false when the session is over.
   */
  _resumeAfterDrop() {
    const room = this._room;
    if (this._status === SESSION_STATUS.RECONNECTING) {
      this._rejectPending();
      return true;
    }
    if (this._closing || this._reconnectAttempts <= 0 || this._status !== SESSION_STATUS.ESTABLISHED) return false;
    if (!room || !room._joined || room._closed) return false;
    clearInterval(this._pinger);
    this._rejectPending();
    this._setStatus(SESSION_STATUS.RECONNECTING);
    room._reconnecting();
    this._reconnect(room);
    return true;
  }

  /** Try (bounded, with backoff) to open a new socket and resume the room; else the session is over. */
  async _reconnect(room) {
    let delay = this._reconnectDelay;
    for (let attempt = 1; attempt <= this._reconnectAttempts; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, delay * (0.8 + 0.4 * Math.random())));
      delay = Math.min(delay * 2, 5000);
      if (this._closing || this._status !== SESSION_STATUS.RECONNECTING) return;
      try {
        const state = await this._resumeOnce(room);
        this._status = SESSION_STATUS.ESTABLISHED; // not emitted again: "join on ESTABLISHED" must not run twice
        this._startPinger(this._ws);
        room._resumed(state);
        return;
      } catch (err) {
        const ws = this._ws;
        if (ws) {
          ws.onclose = null;
          ws.onmessage = null;
          try {
            ws.close();
          } catch (_) {
            /* closed */
          }
        }
        this._rejectPending();
        const final = [ERROR_CODE.INVALID_TOKEN, ERROR_CODE.INVALID_USERNAME, ERROR_CODE.UNSUPPORTED_VERSION];
        if (err && final.includes(err.code)) break;
      }
    }
    this._giveUp();
  }

  /** Out of tries: the room shuts its streams and the session is DISCONNECTED. */
  _giveUp() {
    this._info = {code: ERROR_CODE.DISCONNECTED, message: "the connection dropped and could not be resumed"};
    if (this._room) this._room._shutdown();
    this._setStatus(SESSION_STATUS.DISCONNECTED);
  }

  /** One try: a new socket, hello with the resume secret, join the room again; resolves with the state. */
  _resumeOnce(room) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(socketUrl(this._options.urlServer));
      } catch (err) {
        reject({code: ERROR_CODE.BAD_URL, message: String(err.message || err)});
        return;
      }
      this._ws = ws;
      ws.onmessage = (frame) => this._receive(frame.data);
      ws.onclose = () => {
        if (ws !== this._ws) return;
        this._rejectPending();
        if (this._status === SESSION_STATUS.RECONNECTING) reject({code: ERROR_CODE.DISCONNECTED, message: "the connection closed"});
        else if (!this._resumeAfterDrop()) {
          if (this._room) this._room._shutdown();
          this._setStatus(SESSION_STATUS.DISCONNECTED);
        }
      };
      ws.onopen = async () => {
        const hello = {version: PROTOCOL_VERSION, resume_secret: room.resumeSecret() || undefined};
        if (this._options.token) hello.token = this._options.token;
        if (this._options.username !== undefined || !this._options.token) hello.username = this._options.username || "";
        this._resuming = true;
        try {
          const reply = await this._request("hello", hello);
          this._username = reply.username;
          this._sessionId = reply.session;
          resolve(await this._request("join", {room: room.name()}));
        } catch (err) {
          reject(err);
        } finally {
          this._resuming = false;
        }
      };
    });
  }

  _setStatus(status) {
    if (this._status === status) return;
    if (this._status === SESSION_STATUS.FAILED || this._status === SESSION_STATUS.DISCONNECTED) return;
    this._status = status;
    this._emit(status, this);
  }

  /**
   * Send a command and wait for its one reply (rejects with the error event).
   * @param {string} type
   * @param {object} fields
   * @returns {Promise<object>}
   */
  _request(type, fields) {
    return new Promise((resolve, reject) => {
      if (this._socketClosed() || (this._status === SESSION_STATUS.RECONNECTING && !this._resuming)) {
        reject({code: ERROR_CODE.DISCONNECTED, message: "not connected"});
        return;
      }
      const rid = this._nextRid++;
      const frame = JSON.stringify({type, rid, ...fields});
      const limit = this._limits.max_frame_bytes;
      if (limit !== undefined && frame.length * 3 > limit && utf8Length(frame) > limit) {
        const code = type === "send_message" ? ERROR_CODE.MESSAGE_TOO_LARGE : ERROR_CODE.FRAME_TOO_LARGE;
        reject({code, message: `the ${type} command is larger than the server's ${limit} bytes`});
        return;
      }
      const timer = setTimeout(() => {
        this._pending.delete(rid);
        reject({code: ERROR_CODE.TIMEOUT, message: `no reply to ${type}`});
      }, this._timeout);
      this._pending.set(rid, {resolve, reject, timer});
      this._ws.send(frame);
    });
  }

  _receive(text) {
    let event;
    try {
      event = JSON.parse(text);
    } catch (_) {
      return;
    }
    if (event.rid !== undefined && event.rid !== null && this._pending.has(event.rid)) {
      const waiter = this._pending.get(event.rid);
      this._pending.delete(event.rid);
      clearTimeout(waiter.timer);
      if (event.type === "error" || event.type === "failed") waiter.reject({code: event.code, message: event.message});
      else waiter.resolve(event);
      return;
    }
    const room = this._room;
    if (event.type === "stream_status") {
      const id = idOf(event.stream);
      const stream = room && room._localStreams.get(id);
      if (stream) stream._serverStatus(event);
      else this._earlyStatus.set(id, event);
      return;
    }
    if (event.type === "play_status") {
      const id = idOf(event.play);
      const playing = room && room._playingById.get(id);
      if (playing) playing._serverStatus(event);
      else this._earlyStatus.set(id, event);
      return;
    }
    if (event.type === "layers_wanted") {
      const stream = room && room._localStreams.get(idOf(event.stream));
      if (stream) stream._layersWanted(event.rids);
      return;
    }
    if (event.type === "error") {
      console.warn("roomapi: server error", event.code, event.message);
      return;
    }
    if (room) room._handle(event);
  }

  /** Deliver a status that arrived before the answer that named its object. */
  _replayStatus(id, target) {
    const event = this._earlyStatus.get(id);
    if (!event) return;
    this._earlyStatus.delete(id);
    target._serverStatus(event);
  }
}

/**
 * Open a session with the server.
 * @param {ConnectOptions} options
 * @returns {Connection}
 */
export function connect(options) {
  const connection = new Connection(options || {});
  // Open on the next microtask so that .on(...) chained on the result sees every status.
  Promise.resolve().then(() => connection._open());
  return connection;
}

export {Connection, Room, Participant, LocalStream, RemoteStream, PlayingStream};
