/**
 * Camera, microphone and speaker: pickers filled by enumerateDevices, a preview with a microphone level meter
 * before joining, the choice remembered in localStorage, the speaker applied with setSinkId where supported,
 * and a change reported while in the call (the page swaps the track without re-joining).
 */
import {$, el} from "./dom.js";
import {t} from "./strings.js";

const STORE = "rooms.devices";
const KINDS = {camera: "videoinput", microphone: "audioinput", speaker: "audiooutput"};

function load() {
  try {
    return JSON.parse(localStorage.getItem(STORE) || "{}") || {};
  } catch (_) {
    return {};
  }
}


/**
 * The camera in a call: 640x480, the browsers' usual default. Chromium sends as many simulcast layers as the
 * picture allows (two at 640x480, three from 960x540 up, one at 320x240); more pixels cost a busy machine
 * (three pages in one test browser) more than the tests can bear.
 */
export const CALL_VIDEO = Object.freeze({width: {ideal: 640}, height: {ideal: 480}});

/** A level meter on an audio track: RMS of the waveform, 0..1, on a <meter>. */
class LevelMeter {
  constructor(meter) {
    this.meter = meter;
    this.context = null;
    this.source = null;
    this.timer = null;
    this.level = 0;
  }

  watch(track) {
    this.stop();
    if (!track || !this.meter || !window.AudioContext) return;
    this.context = this.context || new AudioContext();
    if (this.context.state === "suspended") this.context.resume().catch(() => {});
    const analyser = this.context.createAnalyser();
    analyser.fftSize = 512;
    this.source = this.context.createMediaStreamSource(new MediaStream([track]));
    this.source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    this.timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      this.show(Math.min(1, Math.sqrt(sum / samples.length) * 4));
    }, 100);
  }

  /** Resume the audio context after a user gesture (autoplay policy). */
  resume() {
    if (this.context && this.context.state === "suspended") this.context.resume().catch(() => {});
  }

  /** Stop measuring and close the audio context (its real-time thread costs CPU even when idle). */
  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.source) this.source.disconnect();
    this.source = null;
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
    this.show(0);
  }

  /** Show a level measured elsewhere (in the call: the sender's statistics). */
  show(level) {
    this.level = level;
    if (this.meter) this.meter.value = level;
  }
}

/**
 * The device pickers of #devices.
 * @param {{onSwitch?: function(string, string): void}} options  told (kind "camera"|"microphone", deviceId) on a change in the call
 */
export class Devices {
  constructor({onSwitch} = {}) {
    this.onSwitch = onSwitch || (() => {});
    this.selects = {camera: $("cameraSelect"), microphone: $("micSelect"), speaker: $("speakerSelect")};
    this.choice = load();
    this.preview = null;
    this.previewVideo = null;
    this.inCall = false;
    this.meter = new LevelMeter($("micMeter"));
    /** @type {Set<HTMLMediaElement>} remote media elements, for the speaker choice */
    this.outputs = new Set();
    for (const [kind, select] of Object.entries(this.selects)) {
      if (!select) continue;
      select.addEventListener("change", () => this.choose(kind, select.value));
    }
    if (this.selects.speaker && !("setSinkId" in HTMLMediaElement.prototype)) {
      this.selects.speaker.disabled = true;
      this.selects.speaker.title = t("speaker_unsupported");
    }
    document.addEventListener("click", () => this.meter.resume());
    // No camera while nobody looks: a hidden tab or a closed devices panel stops the preview.
    const details = $("devices");
    const sync = () => {
      const wanted = !this.inCall && !document.hidden && (!details || details.open);
      if (wanted && !this.preview && this.started) this.startPreview();
      else if (!wanted && this.preview) this.stopPreview();
    };
    document.addEventListener("visibilitychange", sync);
    if (details) details.addEventListener("toggle", sync);
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener("devicechange", () => this.refresh());
    }
  }

  /** getUserMedia constraints for the chosen camera and microphone (``preview``: a small, light picture). */
  constraints(preview = false) {
    const pick = (id, extra) => (id || extra ? {...(id ? {deviceId: {ideal: id}} : {}), ...extra} : true);
    const size = preview ? {width: {ideal: 320}, height: {ideal: 240}, frameRate: {ideal: 15}} : CALL_VIDEO;
    return {audio: pick(this.choice.microphone), video: pick(this.choice.camera, size)};
  }

  /** Start the preview (before joining) and fill the pickers. */
  async start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      $("devicesInfo").textContent = t("devices_unavailable");
      return;
    }
    this.started = true;
    await this.startPreview();
    await this.refresh();
  }

  async startPreview() {
    this.stopPreview();
    const generation = (this.generation = (this.generation || 0) + 1);
    let media;
    const asking = navigator.mediaDevices.getUserMedia(this.constraints(true));
    this.asking = asking.catch(() => null);
    try {
      media = await asking;
    } catch (err) {
      $("devicesInfo").textContent = t("devices_failed", {reason: (err && (err.message || err.name)) || err});
      return;
    }
    if (this.inCall || generation !== this.generation) {
      // Joined, or another start began meanwhile: this capture is not wanted any more.
      for (const track of media.getTracks()) track.stop();
      return;
    }
    this.preview = media;
    $("devicesInfo").textContent = "";
    this.previewVideo = el("video", {className: "roomapi-video", muted: true, autoplay: true, playsInline: true, "aria-label": t("preview")});
    this.previewVideo.srcObject = this.preview;
    $("previewDisplay").replaceChildren(this.previewVideo);
    this.previewVideo.play().catch(() => {});
    this.meter.watch(this.preview.getAudioTracks()[0]);
  }

  stopPreview() {
    this.generation = (this.generation || 0) + 1;
    if (this.preview) for (const track of this.preview.getTracks()) track.stop();
    if (this.preview) this.meter.stop();
    this.preview = null;
    if (this.previewVideo) this.previewVideo.remove();
    this.previewVideo = null;
  }

  /** Fill the pickers from enumerateDevices, keeping the choice. */
  async refresh() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const [kind, select] of Object.entries(this.selects)) {
      if (!select) continue;
      const ofKind = devices.filter((d) => d.kind === KINDS[kind]);
      const options = [new Option(t("device_default"), "")];
      ofKind.forEach((d, i) => {
        if (d.deviceId && d.deviceId !== "default") options.push(new Option(d.label || t(`device_${kind}_n`, {n: i + 1}), d.deviceId));
      });
      select.replaceChildren(...options);
      select.value = options.some((o) => o.value === this.choice[kind]) ? this.choice[kind] : "";
    }
    if (this.preview && this.selects.camera) this._showCurrent();
  }

  /** Select the devices the preview actually got (the default ones have ids too). */
  _showCurrent() {
    for (const [kind, track] of [["camera", this.preview.getVideoTracks()[0]], ["microphone", this.preview.getAudioTracks()[0]]]) {
      const id = track && track.getSettings().deviceId;
      const select = this.selects[kind];
      if (id && !this.choice[kind] && [...select.options].some((o) => o.value === id)) select.value = id;
    }
  }

  /** A picker changed: remember, then restart the preview, switch in the call, or route the audio. */
  choose(kind, deviceId) {
    this.choice[kind] = deviceId;
    try {
      localStorage.setItem(STORE, JSON.stringify(this.choice));
    } catch (_) {
      /* private mode: not remembered */
    }
    if (kind === "speaker") {
      for (const media of this.outputs) this.applySink(media);
    } else if (this.inCall) {
      this.onSwitch(kind, deviceId);
    } else {
      this.startPreview();
    }
  }

  /** Play a remote element on the chosen speaker. */
  applySink(media) {
    if (!media) return;
    this.outputs.add(media);
    if (!("setSinkId" in media)) return;
    media.setSinkId(this.choice.speaker || "").catch((err) => {
      $("devicesInfo").textContent = t("devices_failed", {reason: (err && err.message) || err});
    });
  }

  /**
   * Joined or left: the preview gives way to the published stream (whose level the stats monitor reports).
   * Resolves once a preview capture still being opened has settled (at most 3 s), so that the camera is not
   * asked for twice at once.
   */
  setInCall(inCall) {
    this.inCall = inCall;
    this.stopPreview();
    this.meter.stop();
    if (!inCall) this.outputs.clear();
    const settled = this.asking || Promise.resolve();
    return Promise.race([settled, new Promise((resolve) => setTimeout(resolve, 3000))]).then(() => undefined);
  }

  /** The published microphone's level (0..1), from the sender's statistics. */
  showLevel(level) {
    this.meter.show(level);
  }

  /** The current microphone level, 0..1. */
  level() {
    return this.meter.level;
  }
}
