"""Chromium pages of the network tests: a Web SDK publisher and players that sample their own getStats().

Every page imports the SDK from the server (``/static/rooms/roomapi.js``).  A player samples its inbound video
every 100 ms into ``window.samples`` (time, framesDecoded, frameWidth, videoWidth, freezeCount,
totalFreezesDuration); :func:`figures` turns a window of samples into what the tests assert.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

SAMPLE_MS = 100


SAMPLER = """
const sampled = (playing, display, every) => {
  const samples = [];
  const sample = async () => {
    const report = await playing.getStats();
    const video = display.querySelector("video");
    if (report) report.forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "video") return;
      samples.push([performance.now(), s.framesDecoded || 0, s.frameWidth || 0,
        video ? video.videoWidth : 0, s.freezeCount || 0, s.totalFreezesDuration || 0]);
    });
  };
  setInterval(sample, every);
  return samples;
};
"""

SENT_SAMPLER = """
const sentSampled = (stream, every) => {
  const sent = {};
  setInterval(async () => {
    const report = await stream.getStats();
    if (report) report.forEach((s) => {
      if (s.type !== "outbound-rtp" || s.kind !== "video") return;
      const key = s.rid || "video";
      (sent[key] = sent[key] || []).push([performance.now(), s.framesEncoded || 0, s.frameWidth || 0,
        s.frameWidth || 0, 0, 0]);
    });
  }, every);
  return sent;
};
"""

PLAY_JS = """
async ({url, login, room, publisher, quality}) => {
SAMPLER
  const api = await import("/static/rooms/roomapi.js");
  const display = document.createElement("div");
  display.style.width = "1280px";
  display.style.height = "720px";
  document.body.appendChild(display);
  const session = await new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error("no session within 30 s")), 30000);
    const connection = api.connect({urlServer: url, username: login});
    connection.on(api.SESSION_STATUS.ESTABLISHED, resolve);
    connection.on(api.SESSION_STATUS.FAILED, () => reject(new Error("session failed")));
  });
  const joined = await new Promise((resolve) => {
    const r = session.join({name: room});
    r.on(api.ROOM_EVENT.STATE, () => resolve(r));
  });
  let participant = null;
  for (let i = 0; i < 450 && !participant; i++) {
    participant = joined.getParticipants().find((p) => p.name() === publisher && p.getStreams().length);
    if (!participant) await new Promise((r) => setTimeout(r, 100));
  }
  if (!participant) throw new Error(publisher + " published nothing within 45 s");
  const playing = participant.play(display, {quality});
  window.playing = playing;
  window.qualities = [];
  playing.on("QUALITY", (_p, q) => window.qualities.push([performance.now(), q]));
  await new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error("not playing within 30 s")), 30000);
    playing.on(api.STREAM_STATUS.PLAYING, resolve);
    playing.on(api.STREAM_STATUS.FAILED, () => reject(new Error(JSON.stringify(playing.getInfo()))));
  });
  window.samples = sampled(playing, display, SAMPLE_MS);
  return performance.now();
}
""".replace("SAMPLE_MS", str(SAMPLE_MS)).replace("SENT_SAMPLER", SENT_SAMPLER).replace("SAMPLER", SAMPLER)

CHAT_JS = """
async ({url, login, room, others}) => {
SAMPLER
SENT_SAMPLER
  const api = await import("/static/rooms/roomapi.js");
  const until = (emitter, ok, bad, what) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(login + ": no " + what + " within 45 s")), 45000);
    emitter.on(ok, (value) => { clearTimeout(timer); resolve(value); });
    if (bad) emitter.on(bad, (...args) => {
      clearTimeout(timer);
      const info = emitter.getInfo ? emitter.getInfo() : args.map((a) => (a && a.getInfo ? a.getInfo() : a));
      reject(new Error(login + ": " + what + " failed: " + JSON.stringify(info)));
    });
  });
  const connection = api.connect({urlServer: url, username: login});
  await until(connection, api.SESSION_STATUS.ESTABLISHED, api.SESSION_STATUS.FAILED, "session");
  const joined = connection.join({name: room});
  await until(joined, api.ROOM_EVENT.STATE, api.ROOM_EVENT.FAILED, "room");
  const own = document.createElement("div");
  document.body.appendChild(own);
  const asked = performance.now();
  const stream = joined.publish({display: own,
    constraints: {audio: true, video: {width: {exact: 320}, height: {exact: 240}, frameRate: 30}}});
  await until(stream, api.STREAM_STATUS.PUBLISHING, api.STREAM_STATUS.FAILED, "publishing");
  window.chat = {samples: {}, started: performance.now(), sent: sentSampled(stream, SAMPLE_MS)};
  window.chat.publishMs = window.chat.started - asked;
  window.chatPlay = async () => {
    for (const other of others) {
      let participant = null;
      for (let i = 0; i < 450 && !participant; i++) {
        participant = joined.getParticipants().find((p) => p.name() === other && p.getStreams().length);
        if (!participant) await new Promise((r) => setTimeout(r, 100));
      }
      if (!participant) throw new Error(login + ": " + other + " published nothing within 45 s");
      const display = document.createElement("div");
      display.style.width = "320px";
      display.style.height = "240px";
      document.body.appendChild(display);
      const playing = participant.play(display);
      window.chat.samples[other] = sampled(playing, display, SAMPLE_MS);
    }
    return performance.now();
  };
  return performance.now();
}
""".replace("SAMPLE_MS", str(SAMPLE_MS)).replace("SENT_SAMPLER", SENT_SAMPLER).replace("SAMPLER", SAMPLER)
PUBLISH_JS = """
async ({url, login, room, width, height}) => {
SENT_SAMPLER
  const api = await import("/static/rooms/roomapi.js");
  const display = document.createElement("div");
  display.style.width = "320px";
  document.body.appendChild(display);
  return await new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error("publishing took over 45 s")), 45000);
    api.connect({urlServer: url, username: login}).on(api.SESSION_STATUS.ESTABLISHED, (session) => {
      session.join({name: room}).on(api.ROOM_EVENT.STATE, (joined) => {
        const options = {
          display,
          constraints: {audio: false, video: {width: {exact: width}, height: {exact: height}, frameRate: 30}},
          simulcast: true,
        };
        const stream = joined.publish(options);
        window.published = stream;
        window.sent = sentSampled(stream, SAMPLE_MS);
        stream.on(api.STREAM_STATUS.PUBLISHING, () => resolve(stream.id()));
        stream.on(api.STREAM_STATUS.FAILED, () => reject(new Error(JSON.stringify(stream.getInfo()))));
      });
    });
  });
}
""".replace("SAMPLE_MS", str(SAMPLE_MS)).replace("SENT_SAMPLER", SENT_SAMPLER)
CHAT_SAMPLES_JS = """(since) => Object.fromEntries(
  Object.entries(window.chat.samples).map(([who, samples]) => [who, samples.filter((s) => s[0] >= since)]))"""
CHAT_SENT_JS = "(since) => (window.chat.sent.video || []).filter((s) => s[0] >= since)"
SENT_JS = "([rid, since]) => (window.sent[rid] || []).filter((s) => s[0] >= since)"
"""What a publisher encoded (samples for :func:`figures`: time, framesEncoded, frameWidth) of a layer since then."""

NOW_JS = "performance.now()"
SAMPLES_JS = "(since) => window.samples.filter((s) => s[0] >= since)"
QUALITIES_JS = "window.qualities.map(([t, q]) => [Math.round(t), q])"
LAST_JS = "window.samples.length ? window.samples[window.samples.length - 1] : null"


STARVED_FPS = 25.0
"""A publisher that encoded fewer frames per second than this was starved of CPU (its camera gives 30)."""


@dataclass
class Figures:
    """What a player decoded within a window of samples."""

    seconds: float
    fps: float
    max_gap_ms: float
    """The longest time framesDecoded did not grow (to within one sample)."""
    freezes: int
    """getStats()'s freezeCount within the window."""
    frozen_ms: float
    """getStats()'s totalFreezesDuration within the window."""
    widths: list[int]
    """Every distinct videoWidth seen, in order."""
    last_frame_age_ms: float
    """How long before the window's end framesDecoded last grew."""

    def __str__(self) -> str:
        return (f"{self.fps:.1f} fps over {self.seconds:.1f} s, longest stall {self.max_gap_ms:.0f} ms, "
                f"{self.freezes} freezes ({self.frozen_ms:.0f} ms), widths {self.widths}")


def figures(samples: list[list[Any]]) -> Figures:
    """The figures of ``samples`` (from :data:`SAMPLES_JS`), first to last."""
    if len(samples) < 2:  # no stats within the window: nothing was decoded (or the page never sampled)
        return Figures(0.0, 0.0, float("inf"), 0, 0.0, [], float("inf"))
    first, last = samples[0], samples[-1]
    seconds = (last[0] - first[0]) / 1000
    gaps: list[float] = []
    since = first[0]
    for before, after in itertools.pairwise(samples):
        if after[1] > before[1]:
            gaps.append(after[0] - since)
            since = after[0]
    gaps.append(last[0] - since)
    age = last[0] - since
    widths = [int(width) for width, _ in itertools.groupby(s[3] for s in samples)]
    return Figures(
        seconds=round(seconds, 2),
        fps=round((last[1] - first[1]) / seconds, 1) if seconds > 0 else 0.0,
        max_gap_ms=round(max(gaps), 0),
        freezes=int(last[4] - first[4]),
        frozen_ms=round((last[5] - first[5]) * 1000, 0),
        widths=widths,
        last_frame_age_ms=round(age, 0),
    )


def fps_bound(sent: Figures, wanted: float) -> float:
    """The frame rate to expect from a player: ``wanted``, or 80 % of what the publisher encoded when the machine
    starved it (the network cannot deliver frames that were never sent)."""
    return wanted if sent.fps >= STARVED_FPS else min(wanted, 0.8 * sent.fps)


def gap_bound(sent: Figures, wanted: float) -> float:
    """The longest stall to allow a player: ``wanted``, plus the publisher's own longest pause when it was starved."""
    return wanted if sent.fps >= STARVED_FPS else wanted + sent.max_gap_ms
