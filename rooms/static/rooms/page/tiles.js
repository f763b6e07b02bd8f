/**
 * Remote participants on the page. A Slot is one participant's place: a tile per stream kind with a name,
 * a status badge, mute flags, a connection-quality mark and a speaking highlight. SlotSet is a fixed set of
 * slots (the two-person pages); Grid makes a tile per participant and lays them out (grid or speaker, pin,
 * screen shares large, pages beyond ``pageSize``).
 */
import {QUALITY, STREAM_STATUS} from "../roomapi.js";
import {el, setStatus} from "./dom.js";
import {t} from "./strings.js";

const svg = (path) =>
  `<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${path}</svg>`;
const ICON_FULLSCREEN = svg('<path d="M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5"/>');
const ICON_PIN = svg('<path d="M9 4h6l-1 6 3 3H7l3-3zM12 13v7"/>');

/** Put a tile (or the whole stage) in fullscreen, or leave fullscreen. */
export function toggleFullscreen(element) {
  if (document.fullscreenElement) return document.exitFullscreen().catch(() => {});
  if (element.requestFullscreen) return element.requestFullscreen().catch(() => {});
  return Promise.resolve();
}

/** Add what every remote tile shows besides the video: quality mark, mic flag, fullscreen (and pin) buttons. */
function decorate(tile, nameOf, {pin} = {}) {
  const label = tile.querySelector(".tile-label") || tile.appendChild(el("div", {className: "tile-label"}));
  if (!tile.querySelector(".quality")) label.append(el("span", {className: "quality", "data-quality": "unknown", hidden: true}));
  if (!tile.querySelector(".layer")) label.append(el("span", {className: "layer", "data-layer": "", hidden: true}));
  if (!tile.querySelector(".mic-flag")) tile.append(el("span", {className: "mic-flag"}, t("mic_off")));
  if (tile.querySelector(".tile-actions")) return;
  const actions = el("div", {className: "tile-actions"});
  const full = el("button", {className: "tile-btn", type: "button", title: t("fullscreen"), innerHTML: ICON_FULLSCREEN});
  full.addEventListener("click", () => toggleFullscreen(tile));
  actions.append(full);
  if (pin) {
    const pinBtn = el("button", {className: "tile-btn tile-pin", type: "button", "aria-pressed": "false", title: t("pin"), innerHTML: ICON_PIN});
    pinBtn.addEventListener("click", () => pin());
    actions.append(pinBtn);
  }
  tile.append(actions);
  tile.relabel = () => {
    const name = nameOf() || "";
    full.setAttribute("aria-label", t("fullscreen_tile", {name}));
    if (pin) actions.querySelector(".tile-pin").setAttribute("aria-label", t("pin_tile", {name}));
  };
  tile.relabel();
}

/** Show a tile's connection quality ("good", "fair", "poor" or "unknown"). */
export function setQuality(tile, quality) {
  const mark = tile && tile.querySelector(".quality");
  if (!mark) return;
  mark.hidden = quality === "unknown";
  mark.dataset.quality = quality;
  mark.textContent = t(`quality_${quality}`);
  mark.title = t("quality_title", {quality: t(`quality_${quality}`)});
}

/** Show the simulcast layer the relay forwards to this tile ("low", "medium", "high"; null: none). */
export function setLayer(tile, layer) {
  const badge = tile && tile.querySelector(".layer");
  if (!badge) return;
  badge.hidden = !layer;
  badge.dataset.layer = layer || "";
  badge.textContent = layer ? t(`layer_${layer}`) : "";
  badge.title = layer ? t("layer_title", {layer: t(`layer_${layer}`)}) : "";
}

/**
 * One remote participant's place on the page: a name label and one display
 * per stream kind ("camera", optionally "screen"), each with a status badge.
 */
export class Slot {
  /**
   * @param {{root: HTMLElement, name: HTMLElement, displays: Object<string, {display: HTMLElement, status: HTMLElement, tile?: HTMLElement}>}} parts
   * @param {{pin?: function(): void, onChange?: function(): void, onVideo?: function(HTMLVideoElement): void}} [hooks]
   */
  constructor(parts, hooks = {}) {
    this.parts = parts;
    this.hooks = hooks;
    this.participant = null;
    this.playing = {};
    for (const kind of Object.keys(parts.displays)) {
      decorate(this.tileOf(kind), () => this.participant && this.participant.name(), kind === "camera" ? {pin: hooks.pin} : {});
    }
    this.clear();
  }

  /** The tile element of a stream kind. */
  tileOf(kind) {
    const part = this.parts.displays[kind];
    return part && (part.tile || part.display.closest(".tile") || part.display);
  }

  /** The participant's name, or "". */
  name() {
    return this.participant ? this.participant.name() : "";
  }

  /** The slot is free. */
  clear() {
    for (const kind of Object.keys(this.playing)) this.stopKind(kind);
    this.participant = null;
    this.parts.name.textContent = "";
    this.parts.root.classList.remove("occupied");
    this.parts.root.removeAttribute("aria-label");
    for (const [kind, part] of Object.entries(this.parts.displays)) {
      setStatus(part.status, "NONE");
      this.setMuted(kind, false, false);
      setQuality(this.tileOf(kind), "unknown");
      setLayer(this.tileOf(kind), null);
      this.tileOf(kind).dataset.speaking = "false";
      if (this.tileOf(kind).relabel) this.tileOf(kind).relabel();
    }
  }

  /** Give the slot to a participant and play what it publishes. */
  assign(participant) {
    this.participant = participant;
    this.parts.name.textContent = participant.name();
    this.parts.root.classList.add("occupied");
    this.parts.root.setAttribute("aria-label", participant.name());
    for (const kind of Object.keys(this.parts.displays)) if (this.tileOf(kind).relabel) this.tileOf(kind).relabel();
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
    // AUTO: the relay forwards the simulcast layer that fits the video element's size (and the link).
    const playing = stream.play(part.display, {quality: QUALITY.AUTO});
    this.playing[kind] = playing;
    const show = (s) => {
      if (this.playing[kind] !== playing) return;
      setStatus(part.status, s.status());
      setLayer(this.tileOf(kind), s.status() === STREAM_STATUS.PLAYING ? s.quality() : null);
      if (s.status() === STREAM_STATUS.PLAYING && this.hooks.onVideo && s.getVideo()) this.hooks.onVideo(s.getVideo());
    };
    playing
      .on("QUALITY", show)
      .on(STREAM_STATUS.PENDING, show)
      .on(STREAM_STATUS.PLAYING, show)
      .on(STREAM_STATUS.STOPPED, show)
      .on(STREAM_STATUS.UNPUBLISHED, show)
      .on(STREAM_STATUS.FAILED, show);
    show(playing);
    if (this.hooks.onChange) this.hooks.onChange();
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
      setQuality(this.tileOf(kind), "unknown");
      setLayer(this.tileOf(kind), null);
    }
    if (this.hooks.onChange) this.hooks.onChange();
  }

  /** Show a stream's mute flags on its tile. */
  setMuted(kind, audio, video) {
    const tile = this.tileOf(kind);
    if (!tile) return;
    tile.dataset.audioMuted = String(Boolean(audio));
    tile.dataset.videoMuted = String(Boolean(video));
  }

  /** Highlight the camera tile while the participant speaks. */
  setSpeaking(speaking) {
    const tile = this.tileOf("camera");
    if (tile) tile.dataset.speaking = String(Boolean(speaking));
  }
}

/** A fixed set of slots: each participant gets the first free one, and keeps it. */
export class SlotSet {
  /** @param {Slot[]} slots */
  constructor(slots) {
    this.slots = slots;
  }

  /** Every slot (for the stats monitor). */
  all() {
    return this.slots;
  }

  /** The slot showing ``participant`` (by name), if any. */
  of(participant) {
    const name = typeof participant === "string" ? participant : participant.name();
    return this.slots.find((s) => s.participant && s.participant.name() === name);
  }

  /** The participant's slot, given the first free one if it has none (undefined when all are taken). */
  install(participant) {
    if (this.of(participant)) return this.of(participant);
    const free = this.slots.find((s) => !s.participant);
    if (free) free.assign(participant);
    return free;
  }

  /** The participant left: free its slot. */
  remove(participant) {
    const slot = this.of(participant);
    if (slot) slot.clear();
  }

  /** Free every slot. */
  clear() {
    for (const slot of this.slots) slot.clear();
  }

  /** Who speaks now (from the relay's active-speaker events, or from received audio levels). */
  setSpeaking(name, speaking) {
    const slot = this.of(name);
    if (slot) slot.setSpeaking(speaking);
  }
}

/** Columns of a grid of ``n`` tiles: 1, 2 up to 4, 3 up to 9, 4 up to 16, 5 up to 25. */
export function columnsFor(n) {
  return Math.max(1, Math.min(5, Math.ceil(Math.sqrt(n))));
}

/**
 * A tile per participant (and one per screen share), laid out as a grid or speaker-first,
 * with a pinned tile, screen shares large, and pages of ``pageSize`` tiles.
 */
export class Grid {
  /**
   * @param {{container: HTMLElement, empty?: HTMLElement, pageSize?: number, onVideo?: function(HTMLVideoElement): void,
   *          pager?: {bar: HTMLElement, prev: HTMLElement, next: HTMLElement, info: HTMLElement}, layoutButton?: HTMLElement}} options
   */
  constructor({container, empty, pageSize = 25, onVideo, pager, layoutButton}) {
    this.container = container;
    this.empty = empty;
    this.pageSize = Math.max(1, pageSize);
    this.onVideo = onVideo;
    this.pager = pager;
    this.layoutButton = layoutButton;
    /** @type {Map<string, Slot>} by participant name, in joining order */
    this.slots = new Map();
    this.mode = "grid";
    this.pinned = null;
    this.speaker = null;
    this.page = 0;
    if (pager) {
      pager.prev.addEventListener("click", () => this.showPage(this.page - 1));
      pager.next.addEventListener("click", () => this.showPage(this.page + 1));
    }
    if (layoutButton) layoutButton.addEventListener("click", () => this.setMode(this.mode === "grid" ? "speaker" : "grid"));
    this.render();
  }

  /** Every slot (for the stats monitor). */
  all() {
    return [...this.slots.values()];
  }

  _number() {
    const used = new Set(this.all().map((s) => s.number));
    let n = 1;
    while (used.has(n)) n += 1;
    return n;
  }

  _makeSlot(name) {
    const n = this._number();
    const id = `participant${n}`;
    const tileOf = (suffix, extra) =>
      el(
        "div",
        {id: `${id}${suffix}`, className: `tile tile-remote ${extra}`, role: "group", "data-video-muted": "false", "data-audio-muted": "false"},
        el("div", {id: `${id}${suffix}Display`, className: "display"}),
        el("div", {className: "tile-label"}, el("span", {id: `${id}${suffix}Name`, className: "tile-name"})),
        el("span", {id: `${id}${suffix}Status`, className: "badge tile-status", "data-status": "NONE"}),
        el("span", {className: "muted-flag"}, t("video_muted")),
      );
    const camera = tileOf("", "");
    const screen = tileOf("Screen", "tile-screen");
    screen.classList.replace("tile-remote", "tile-share");
    screen.querySelector(".muted-flag").remove();
    this.container.append(camera, screen);
    const slot = new Slot(
      {
        root: camera,
        name: camera.querySelector(".tile-name"),
        displays: {
          camera: {display: camera.querySelector(".display"), status: camera.querySelector(".tile-status"), tile: camera},
          screen: {display: screen.querySelector(".display"), status: screen.querySelector(".tile-status"), tile: screen},
        },
      },
      {pin: () => this.pin(slot.name()), onChange: () => this.render(), onVideo: this.onVideo},
    );
    slot.number = n;
    slot.screenTile = screen;
    slot.screenName = screen.querySelector(".tile-name");
    this.slots.set(name, slot);
    return slot;
  }

  /** The slot showing ``participant`` (a Participant or a name), if any. */
  of(participant) {
    return this.slots.get(typeof participant === "string" ? participant : participant.name());
  }

  /** The participant's slot, made if needed, playing what it publishes. */
  install(participant) {
    let slot = this.of(participant);
    if (slot) return slot;
    slot = this._makeSlot(participant.name());
    slot.assign(participant);
    slot.screenName.textContent = t("screen_of", {name: participant.name()});
    slot.screenTile.setAttribute("aria-label", t("screen_of", {name: participant.name()}));
    this.render();
    return slot;
  }

  /** The participant left: its tiles go. */
  remove(participant) {
    const name = typeof participant === "string" ? participant : participant.name();
    const slot = this.slots.get(name);
    if (!slot) return;
    slot.clear();
    this.slots.delete(name);
    slot.parts.root.remove();
    slot.screenTile.remove();
    if (this.pinned === name) this.pinned = null;
    if (this.speaker === name) this.speaker = null;
    this.render();
  }

  /** Everyone left. */
  clear() {
    for (const name of [...this.slots.keys()]) this.remove(name);
  }

  /** "grid" or "speaker" (the speaking or pinned participant large, the others in a strip). */
  setMode(mode) {
    this.mode = mode;
    if (this.layoutButton) {
      this.layoutButton.setAttribute("aria-pressed", String(mode === "speaker"));
      this.layoutButton.textContent = mode === "speaker" ? t("grid_layout") : t("speaker_layout");
    }
    this.render();
  }

  /** Pin a participant's tile large (again to unpin). */
  pin(name) {
    this.pinned = this.pinned === name ? null : name;
    this.render();
  }

  /** Who speaks now (from the relay's active-speaker events, or from received audio levels). */
  setSpeaking(name, speaking) {
    const slot = this.slots.get(name);
    if (!slot) return;
    slot.setSpeaking(speaking);
    if (speaking && this.speaker !== name) {
      this.speaker = name;
      if (this.mode === "speaker" && !this.pinned) this.render();
    }
  }

  /** Show page ``n`` of the tiles that are not featured. */
  showPage(n) {
    this.page = n;
    this.render();
  }

  /** Lay the tiles out. */
  render() {
    const slots = this.all();
    const screens = slots.filter((s) => s.playing.screen).map((s) => s.screenTile);
    for (const s of slots) s.screenTile.hidden = !s.playing.screen;
    let featured = [...screens];
    const lead = this.pinned || (this.mode === "speaker" ? this.speaker || (slots[0] && slots[0].name()) : null);
    const leadSlot = lead && this.slots.get(lead);
    if (leadSlot) featured = [leadSlot.parts.root, ...featured];
    const rest = slots.map((s) => s.parts.root).filter((tile) => !featured.includes(tile));
    const pages = Math.max(1, Math.ceil(rest.length / this.pageSize));
    this.page = Math.min(Math.max(0, this.page), pages - 1);
    const visible = new Set(rest.slice(this.page * this.pageSize, (this.page + 1) * this.pageSize));
    for (const tile of rest) tile.hidden = !visible.has(tile);
    for (const s of slots) {
      const root = s.parts.root;
      root.classList.toggle("featured", featured.includes(root));
      root.hidden = !featured.includes(root) && !visible.has(root);
      const pinBtn = root.querySelector(".tile-pin");
      if (pinBtn) pinBtn.setAttribute("aria-pressed", String(this.pinned === s.name()));
    }
    for (const tile of screens) tile.classList.add("featured");
    const shown = featured.length + visible.size;
    this.container.dataset.layout = featured.length ? "featured" : "grid";
    this.container.dataset.cols = String(columnsFor(featured.length ? Math.min(visible.size, 5) || 1 : shown));
    this.container.dataset.count = String(slots.length);
    if (this.empty) this.empty.hidden = slots.length > 0;
    if (this.pager) {
      this.pager.bar.hidden = pages < 2;
      this.pager.info.textContent = t("page_of", {page: this.page + 1, pages});
      this.pager.prev.disabled = this.page === 0;
      this.pager.next.disabled = this.page >= pages - 1;
    }
  }
}
