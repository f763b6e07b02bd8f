/** The local stream's controls: publish/stop, mute and unmute audio and video, and the local tile's flags. */
import {STREAM_STATUS} from "../roomapi.js";
import {$, setStatus} from "./dom.js";

const LIVE = [STREAM_STATUS.PUBLISHING, STREAM_STATUS.PENDING];

/**
 * Publishes the camera into #localDisplay and drives #publishBtn, #muteAudioBtn, #muteVideoBtn.
 * @param {{room: function(): object|null, constraints?: function(): MediaStreamConstraints, onFailed: function(string): void}} options
 */
export class LocalControls {
  constructor({room, constraints, onFailed}) {
    this.room = room;
    this.constraints = constraints;
    this.onFailed = onFailed;
    /** @type {object|null} the SDK's LocalStream */
    this.stream = null;
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

  /** Publish the camera and microphone. */
  publish() {
    if (!this.room()) return;
    this.stream = this.room().publish({
      display: $("localDisplay"),
      constraints: this.constraints ? this.constraints() : {audio: true, video: true},
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
    this.update();
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
    a.textContent = live && stream.isAudioMuted() ? "Unmute A" : "Mute A";
    v.textContent = live && stream.isVideoMuted() ? "Unmute V" : "Mute V";
    a.classList.toggle("active", Boolean(live && stream.isAudioMuted()));
    v.classList.toggle("active", Boolean(live && stream.isVideoMuted()));
    a.disabled = v.disabled = !live;
    p.textContent = stream && LIVE.includes(stream.status()) ? "Stop" : "Publish";
    p.disabled = !this.room();
    $("localTile").dataset.videoMuted = String(Boolean(live && stream.isVideoMuted()));
    $("localTile").dataset.audioMuted = String(Boolean(live && stream.isAudioMuted()));
  }
}
