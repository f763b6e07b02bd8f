/**
 * The local stream's controls: publish/stop, mute and unmute audio and video, the local tile's flags,
 * and a device switch while publishing (the new track replaces the old one, nobody re-joins).
 */
import {STREAM_STATUS} from "../roomapi.js";
import {CALL_VIDEO} from "./devices.js";
import {$, setStatus} from "./dom.js";
import {t} from "./strings.js";

const LIVE = [STREAM_STATUS.PUBLISHING, STREAM_STATUS.PENDING];

/**
 * Publishes the camera into #localDisplay and drives #publishBtn, #muteAudioBtn, #muteVideoBtn.
 * @param {{room: function(): object|null, constraints?: function(): MediaStreamConstraints,
 *          onFailed: function(string): void}} options
 */
export class LocalControls {
  constructor({room, constraints, onFailed}) {
    this.room = room;
    this.constraints = constraints;
    this.onFailed = onFailed;
    /** @type {object|null} the SDK's LocalStream */
    this.stream = null;
    /** Called after every update of the buttons (the stream's status or mute flags may have changed). */
    this.onChange = () => {};
    $("publishBtn").addEventListener("click", () => {
      if (this.stream && LIVE.includes(this.stream.status())) this.stream.stop();
      else this.publish();
    });
    $("muteAudioBtn").addEventListener("click", () => this.toggle("Audio"));
    $("muteVideoBtn").addEventListener("click", () => this.toggle("Video"));
  }

  /** Mute or unmute the audio ("Audio") or video ("Video") of the local stream. */
  toggle(what) {
    const stream = this.stream;
    if (!stream) return;
    const muted = stream[`is${what}Muted`]();
    stream[muted ? `unmute${what}` : `mute${what}`]().then(() => this.update());
    this.update();
  }

  /** Publish the camera and microphone, the camera in three simulcast layers (each player gets the one it fits). */
  publish() {
    if (!this.room()) return;
    this.stream = this.room().publish({
      display: $("localDisplay"),
      constraints: this.constraints ? this.constraints() : {audio: true, video: true},
      simulcast: true,
      record: false,
      receiveVideo: false,
      receiveAudio: false,
    });
    const show = (stream) => {
      setStatus($("localStatus"), stream.status());
      if (stream.status() === STREAM_STATUS.FAILED && stream.getInfo()) this.onFailed(stream.getInfo().message || "");
      this.update();
    };
    this.stream
      .on(STREAM_STATUS.PENDING, show)
      .on(STREAM_STATUS.PUBLISHING, show)
      .on(STREAM_STATUS.UNPUBLISHED, show)
      .on(STREAM_STATUS.FAILED, show);
    show(this.stream); // PENDING was emitted before these handlers were attached
  }

  /**
   * Switch the camera or microphone of the live stream to ``deviceId`` without re-publishing.
   * @param {"camera"|"microphone"} kind
   * @param {string} deviceId  "" for the default device
   * @returns {Promise<MediaStreamTrack|null>} the new track
   */
  async switchDevice(kind, deviceId) {
    const stream = this.stream;
    if (!stream || stream.status() !== STREAM_STATUS.PUBLISHING) return null;
    const device = deviceId ? {deviceId: {exact: deviceId}} : {};
    const wanted = kind === "camera" ? {video: {...device, ...CALL_VIDEO}} : {audio: deviceId ? device : true};
    const media = await navigator.mediaDevices.getUserMedia(wanted);
    const track = media.getTracks()[0];
    try {
      await stream.replaceTrack(track);
    } catch (err) {
      track.stop();
      this.onFailed(t("switch_failed", {reason: (err && err.message) || err}));
      return null;
    }
    return track;
  }

  /** Out of the room: forget the stream. */
  reset() {
    this.stream = null;
    setStatus($("localStatus"), "NONE");
    this.update();
  }

  /** Bring the buttons and the local tile in line with the stream. */
  update() {
    const a = $("muteAudioBtn");
    const v = $("muteVideoBtn");
    const p = $("publishBtn");
    const stream = this.stream;
    const live = stream && stream.status() === STREAM_STATUS.PUBLISHING;
    const audioMuted = Boolean(live && stream.isAudioMuted());
    const videoMuted = Boolean(live && stream.isVideoMuted());
    a.textContent = audioMuted ? t("unmute_audio") : t("mute_audio");
    v.textContent = videoMuted ? t("unmute_video") : t("mute_video");
    a.setAttribute("aria-pressed", String(audioMuted));
    v.setAttribute("aria-pressed", String(videoMuted));
    a.classList.toggle("active", audioMuted);
    v.classList.toggle("active", videoMuted);
    a.disabled = v.disabled = !live;
    p.textContent = stream && LIVE.includes(stream.status()) ? t("stop") : t("publish");
    p.disabled = !this.room();
    $("localTile").dataset.videoMuted = String(videoMuted);
    $("localTile").dataset.audioMuted = String(audioMuted);
    this.onChange();
  }
}
