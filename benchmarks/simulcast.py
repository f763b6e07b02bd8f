"""Simulcast through the relay's peers, without a server: a Chromium publisher, aiortc players, switching times.

A headless Chromium page (served by Playwright's router on ``http://localhost``, a secure context, so the fake
camera works) publishes a 1280x720 camera in three layers (1/4, 1/2, full) and, optionally, a WebAudio tone,
straight to an in-process :class:`media_relay.peers.Publication`; aiortc peer connections play it through
:class:`media_relay.peers.Playback` and decode it.  ``python -m benchmarks.simulcast`` measures how long a
player waits for the new width after asking for another quality (layer up, layer down); the tests of
tests/test_simulcast_chromium.py use the same harness without timing anything.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

logger = logging.getLogger(__name__)

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
WIDTHS = {"low": 320, "medium": 640, "high": 1280}
TIMEOUT = 30.0

PAGE = """<!doctype html><html><body><script>
window.publish = async (withAudio, codec) => {
  const stream = await navigator.mediaDevices.getUserMedia(
    {video: {width: {exact: 1280}, height: {exact: 720}, frameRate: 30}});
  const pc = new RTCPeerConnection();
  window.pc = pc;
  const encodings = [
    {rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000},
    {rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000},
    {rid: "f", maxBitrate: 1500000},
  ];
  const video = pc.addTransceiver(stream.getVideoTracks()[0],
    {direction: "sendonly", streams: [stream], sendEncodings: encodings});
  window.sender = video.sender;
  if (codec) {
    // Only this codec (H.264: packetization mode 1, as aiortc takes it) and RTX.
    const wanted = RTCRtpSender.getCapabilities("video").codecs.filter((c) =>
      c.mimeType.toLowerCase() === "video/rtx" || (c.mimeType.toLowerCase() === "video/" + codec.toLowerCase()
        && (codec.toLowerCase() !== "h264" || (c.sdpFmtpLine || "").includes("packetization-mode=1"))));
    video.setCodecPreferences(wanted);
  }
  if (withAudio) {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    gain.gain.value = 0;
    const dest = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    window.tone = gain;
    pc.addTransceiver(dest.stream.getAudioTracks()[0], {direction: "sendonly", streams: [stream]});
  }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 5000);
  });
  return pc.localDescription.sdp;
};
window.answer = async (sdp) => { await window.pc.setRemoteDescription({type: "answer", sdp}); };
let layersChain = Promise.resolve();
window.setActive = (rids) => {
  // One change at a time: setParameters needs the parameters of the latest getParameters.
  layersChain = layersChain.then(async () => {
    const parameters = window.sender.getParameters();
    for (const encoding of parameters.encodings) encoding.active = rids.includes(encoding.rid);
    await window.sender.setParameters(parameters);
  });
  return layersChain;
};
window.setTone = (on) => { window.tone.gain.value = on ? 0.5 : 0; };
</script></body></html>"""


class SimulcastRig:
    """One Chromium simulcast publisher on an in-process Publication, and aiortc players of it."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.page: Any = None
        self.publication: Any = None
        self.players: list[tuple[RTCPeerConnection, Any]] = []
        self.wanted: list[set[str]] = []
        self.speaking: list[list[str]] = []
        self.speakers: Any = None
        self.switched_at: list[tuple[float, str]] = []
        """When the relay switched a player's layer (any player), and to which quality."""

    async def publish(self, audio: bool = False, codec: str = "") -> None:
        """Open the page, publish three layers (and a silent tone), wait until the publication's media flows.

        ``codec`` ("VP8", "H264", ...): the only video codec the page offers (default: Chromium's choice, VP8)."""
        from media_relay.peers import Publication
        from media_relay.speakers import ActiveSpeakers

        context = await self.browser.new_context()
        self.page = await context.new_page()
        await self.page.route(
            "http://localhost/simulcast", lambda route: route.fulfill(body=PAGE, content_type="text/html")
        )
        await self.page.goto("http://localhost/simulcast")
        self.speakers = ActiveSpeakers(self.speaking.append)
        self.publication = Publication(
            uuid.uuid4().hex, 1, 1, _failed("publication"), _nothing, speakers=self.speakers,
            on_layers_wanted=self._layers_wanted,
        )
        offer = await self.page.evaluate("([audio, codec]) => window.publish(audio, codec)", [audio, codec])
        answer = await self.publication.answer(offer)
        await self.page.evaluate("(sdp) => window.answer(sdp)", answer)
        ingest = self.publication.ingests["video"]
        await until(lambda: ingest.packets_received > 0, TIMEOUT, "no video reached the relay")

    def _layers_wanted(self, rids: set[str]) -> None:
        """Dynacast, as a page does it: set ``active`` on the publisher's encodings."""
        self.wanted.append(rids)
        if self.page is not None:
            task = asyncio.ensure_future(self.page.evaluate("(rids) => window.setActive(rids)", sorted(rids)))
            task.add_done_callback(_log_failure)

    async def play(self, quality: str) -> tuple[Any, MediaStreamTrack, list[str]]:
        """A new aiortc player at ``quality``: its Playback, decoded video track and forwarded-quality reports."""
        from media_relay.peers import Playback

        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
        pc.on("track", lambda track: tracks.put_nowait(track) if track.kind == "video" else None)
        await pc.setLocalDescription(await pc.createOffer())
        reports: list[str] = []

        async def on_quality(_playback: Any, forwarded: str) -> None:
            reports.append(forwarded)
            self.switched_at.append((time.monotonic(), forwarded))

        playback = Playback(
            uuid.uuid4().hex, self.publication, 2, "test", _failed("playback"), _nothing, quality=quality,
            on_quality=on_quality,
        )
        self.publication.playbacks.add(playback)
        answer = await playback.answer(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        track = await asyncio.wait_for(tracks.get(), TIMEOUT)
        self.players.append((pc, playback))
        return playback, track, reports

    async def close(self) -> None:
        for pc, playback in self.players:
            await playback.close()
            await pc.close()
        if self.publication is not None:
            await self.publication.close()
        if self.speakers is not None:
            self.speakers.close()
        if self.page is not None:
            await self.page.context.close()


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("setting active encodings failed: %s", task.exception())


async def _nothing(*_args: Any) -> None:
    return None


def _failed(what: str) -> Callable[[str], Awaitable[None]]:
    async def failed(reason: str) -> None:
        logger.error("%s failed: %s", what, reason)

    return failed


async def until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll ``predicate`` every 50 ms until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.05)


async def width_reached(track: MediaStreamTrack, width: int, timeout: float = TIMEOUT) -> float:
    """Decode until a frame of ``width`` arrives; the seconds it took."""
    start = time.monotonic()

    async def decode() -> None:
        while True:
            frame = await track.recv()
            if getattr(frame, "width", None) == width:
                return

    await asyncio.wait_for(decode(), timeout)
    return time.monotonic() - start


async def measure(repeats: int, keep_layers: bool = False) -> dict[str, list[float]]:
    """Switching times of one player: low -> high (up) and high -> low (down), ``repeats`` times each: until the
    player decodes a frame of the new width, and (``(relay)``) until the relay forwards the new layer.

    Alone, the player's switch up waits for dynacast to resume the top layer at the publisher; with
    ``keep_layers`` a second player watching "high" keeps every layer flowing (the switch alone is measured).
    """
    from playwright.async_api import async_playwright

    from tests.e2e.conftest import CHROMIUM_ARGS

    times: dict[str, list[float]] = {"up": [], "down": [], "up (relay)": [], "down (relay)": []}
    drain: asyncio.Future[None] | None = None
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        rig = SimulcastRig(browser)
        try:
            await rig.publish()
            if keep_layers:
                _, other, _ = await rig.play("high")
                await width_reached(other, WIDTHS["high"])
                drain = asyncio.ensure_future(_drain(other))
            playback, track, _ = await rig.play("low")
            await width_reached(track, WIDTHS["low"])
            await asyncio.sleep(2.0)
            for _ in range(repeats):
                for direction, quality in (("up", "high"), ("down", "low")):
                    asked = time.monotonic()
                    playback.set_quality(quality)
                    times[direction].append(await width_reached(track, WIDTHS[quality]))
                    switched = [at for at, forwarded in rig.switched_at if at >= asked and forwarded == quality]
                    if switched:
                        times[f"{direction} (relay)"].append(switched[0] - asked)
                    await asyncio.sleep(2.0)
        finally:
            if drain is not None:
                drain.cancel()
            await rig.close()
            await browser.close()
    return times


async def _drain(track: MediaStreamTrack) -> None:
    """Keep decoding a track nobody looks at (its frames would queue up in aiortc and slow everything)."""
    while True:
        await track.recv()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep-layers", action="store_true", help="a second player keeps all layers flowing")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conference.settings")
    import django

    django.setup()
    logging.basicConfig(level=logging.WARNING)
    times = asyncio.run(measure(args.repeats, args.keep_layers))
    for name, values in times.items():
        sys.stdout.write(
            f"layer {name}: median {statistics.median(values) * 1000:.0f} ms, "
            f"min {min(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms over {len(values)} switches\n"
        )


if __name__ == "__main__":
    main()
