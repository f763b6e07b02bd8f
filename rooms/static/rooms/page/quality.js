/**
 * What getStats() tells about each played stream, sampled every second: a connection quality per tile
 * (good / fair / poor from loss, round-trip time, jitter and bitrate), the received audio level that drives
 * the speaking highlight until the relay reports active speakers, and the stats panel (codec, resolution,
 * fps, bitrate, loss, RTT, jitter, the simulcast layer forwarded).
 */
import {el, $} from "./dom.js";
import {t} from "./strings.js";
import {setQuality} from "./tiles.js";

/** An audio level (RMS, 0..1) above this counts as speaking. */
export const SPEAKING_LEVEL = 0.02;

/**
 * Rate a connection from one sample.
 * Bitrate alone says little (a still picture needs few bits), so video counts through its decoded frame rate.
 * @param {{lossPct: number, rttMs: number|null, jitterMs: number, kbps: number, fps: number|null, videoExpected: boolean}} sample
 * @returns {"good"|"fair"|"poor"}
 */
export function rate({lossPct, rttMs, jitterMs, kbps, fps, videoExpected}) {
  const rtt = rttMs || 0;
  const video = videoExpected && fps !== null;
  if (lossPct >= 8 || rtt >= 400 || jitterMs >= 80 || kbps <= 0 || (video && fps < 2)) return "poor";
  if (lossPct >= 2 || rtt >= 200 || jitterMs >= 30 || (video && fps < 10)) return "fair";
  return "good";
}

/** Pull the numbers of one playback out of an RTCStatsReport. */
export function readReport(report) {
  const out = {video: null, audio: null, rtt: null, codec: ""};
  const codecs = new Map();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") out.video = s;
    else if (s.type === "inbound-rtp" && s.kind === "audio") out.audio = s;
    else if (s.type === "candidate-pair" && s.state === "succeeded" && typeof s.currentRoundTripTime === "number") {
      out.rtt = s.currentRoundTripTime;
    } else if (s.type === "codec") codecs.set(s.id, s);
  });
  const codec = out.video && codecs.get(out.video.codecId);
  out.codec = codec ? codec.mimeType.replace(/^video\//, "") : "";
  return out;
}

/** Samples every slot's playbacks and shows the results. */
export class StatsMonitor {
  /**
   * @param {{stage: {all: function(): object[], setSpeaking: function(string, boolean): void}, interval?: number,
   *          onLevel?: function(string, number): void, local?: function(): object|null,
   *          onLocalLevel?: function(number): void}} options
   *   ``local``: the published stream, whose microphone level goes to ``onLocalLevel``;
   *   ``levelsSpeak``: whether received audio levels drive the speaking highlight (false once the relay
   *   reports active speakers: its events drive it then).
   */
  constructor({stage, interval = 1000, onLevel, local, onLocalLevel, levelsSpeak}) {
    this.stage = stage;
    this.levelsSpeak = levelsSpeak || (() => true);
    this.local = local;
    this.onLocalLevel = onLocalLevel;
    this.interval = interval;
    this.onLevel = onLevel;
    this.previous = new WeakMap();
    this.timer = null;
    this.busy = false;
  }

  start() {
    if (!this.timer) this.timer = setInterval(() => this.sample(), this.interval);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    const body = $("statsBody");
    if (body) body.replaceChildren();
  }

  /** One round over every playback. */
  async sample() {
    if (this.busy) return;
    this.busy = true;
    try {
      const rows = [];
      for (const slot of this.stage.all()) {
        for (const [kind, playing] of Object.entries(slot.playing)) {
          const report = await playing.getStats().catch(() => null);
          if (!report) continue;
          const row = this._measure(slot, kind, playing, readReport(report));
          if (row) rows.push(row);
        }
      }
      const body = $("statsBody");
      if (body) body.replaceChildren(...rows);
      await this._localLevel();
    } finally {
      this.busy = false;
    }
  }

  async _localLevel() {
    const stream = this.local && this.local();
    if (!stream || !this.onLocalLevel) return;
    const report = await stream.getStats().catch(() => null);
    let level = 0;
    if (report) report.forEach((s) => {
      if (s.type === "media-source" && s.kind === "audio" && typeof s.audioLevel === "number") level = s.audioLevel;
    });
    this.onLocalLevel(level);
  }

  _measure(slot, kind, playing, now) {
    const at = performance.now();
    const before = this.previous.get(playing);
    const count = (s, field) => (s && typeof s[field] === "number" ? s[field] : 0);
    const totals = {
      at,
      lost: count(now.video, "packetsLost") + count(now.audio, "packetsLost"),
      received: count(now.video, "packetsReceived") + count(now.audio, "packetsReceived"),
      bytes: count(now.video, "bytesReceived") + count(now.audio, "bytesReceived"),
      frames: count(now.video, "framesDecoded"),
      energy: count(now.audio, "totalAudioEnergy"),
      duration: count(now.audio, "totalSamplesDuration"),
    };
    this.previous.set(playing, totals);
    if (!before) return null;
    const seconds = Math.max(0.001, (at - before.at) / 1000);
    const lost = Math.max(0, totals.lost - before.lost);
    const received = Math.max(0, totals.received - before.received);
    const lossPct = lost + received > 0 ? (100 * lost) / (lost + received) : 0;
    const kbps = ((totals.bytes - before.bytes) * 8) / seconds / 1000;
    const jitterMs = 1000 * Math.max(count(now.video, "jitter"), count(now.audio, "jitter"));
    const rttMs = now.rtt === null ? null : now.rtt * 1000;
    const tile = slot.tileOf(kind);
    const videoExpected = Boolean(now.video) && tile.dataset.videoMuted !== "true";
    const fps = now.video ? (totals.frames - before.frames) / seconds : null;
    const quality = rate({lossPct, rttMs, jitterMs, kbps, fps, videoExpected});
    setQuality(tile, quality);
    if (kind === "camera") {
      const dEnergy = totals.energy - before.energy;
      const dDuration = totals.duration - before.duration;
      const level = dDuration > 0 ? Math.sqrt(Math.max(0, dEnergy) / dDuration) : count(now.audio, "audioLevel");
      tile.dataset.level = level.toFixed(3);
      if (this.onLevel) this.onLevel(slot.name(), level);
      if (this.levelsSpeak()) this.stage.setSpeaking(slot.name(), tile.dataset.audioMuted !== "true" && level >= SPEAKING_LEVEL);
    }
    const v = now.video || {};
    const cell = (text) => el("td", {}, text);
    return el(
      "tr",
      {"data-who": slot.name(), "data-kind": kind, "data-quality": quality},
      el("th", {scope: "row"}, kind === "camera" ? slot.name() : t("screen_of", {name: slot.name()})),
      cell(now.codec || "—"),
      cell(v.frameWidth ? `${v.frameWidth}×${v.frameHeight}` : "—"),
      cell(typeof v.framesPerSecond === "number" ? String(Math.round(v.framesPerSecond)) : "—"),
      cell(`${Math.round(kbps)}`),
      cell(`${lossPct.toFixed(1)}`),
      cell(rttMs === null ? "—" : `${Math.round(rttMs)}`),
      cell(`${Math.round(jitterMs)}`),
      cell(typeof playing.quality === "function" && playing.quality() ? t(`layer_${playing.quality()}`) : "—"),
    );
  }
}
