/** Remote participants' places on the page: a Slot is a name, displays and a status badge per stream kind. */
import {STREAM_STATUS} from "../roomapi.js";
import {setStatus} from "./dom.js";

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

/** A fixed set of slots: each participant gets the first free one, and keeps it. */
export class SlotSet {
  /** @param {Slot[]} slots */
  constructor(slots) {
    this.slots = slots;
  }

  /** The slot showing ``participant`` (by name), if any. */
  of(participant) {
    return this.slots.find((s) => s.participant && s.participant.name() === participant.name());
  }

  /** The participant's slot, given the first free one if it has none (undefined when all are taken). */
  install(participant) {
    if (this.of(participant)) return this.of(participant);
    const free = this.slots.find((s) => !s.participant);
    if (free) free.assign(participant);
    return free;
  }

  /** Free every slot. */
  clear() {
    for (const slot of this.slots) slot.clear();
  }
}
