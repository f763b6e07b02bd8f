"""A media load client process: 3-person rooms whose members publish pre-encoded VP8 (+ Opus) and play the
other two with counting receivers (no decoding).

Driven by benchmarks.load over stdin/stdout: ``prepare`` (encode the clips once), ``add_room`` (3 participants
join, publish, play each other; returns once every played stream delivers), ``snapshot`` (cumulative
per-stream counters and this process's CPU seconds).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import uvloop
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from benchmarks.load_common import cpu_seconds, serve_commands
from benchmarks.load_signal_client import Client
from benchmarks.media import EncodedClip, PacketTrack, Probe, encode_clip
from media_relay.aiortc_compat import replace_receive_handler

logger = logging.getLogger(__name__)

AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
READY_TIMEOUT = 45.0


def encode_opus(seconds: float = 2.0) -> list[av.Packet]:
    """``seconds`` of a stereo 440 Hz tone encoded once with libopus into 20 ms packets."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_RATE
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 64000
    codec.time_base = AUDIO_TIME_BASE
    packets: list[av.Packet] = []
    count = int(seconds * AUDIO_RATE / AUDIO_SAMPLES)
    for index in range(count):
        t = (np.arange(AUDIO_SAMPLES) + index * AUDIO_SAMPLES) / AUDIO_RATE
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * AUDIO_SAMPLES
        packets.extend(codec.encode(frame))
    packets.extend(codec.encode(None))
    return packets


class OpusPacketTrack(MediaStreamTrack):
    """An audio track whose frames are pre-encoded Opus ``av.Packet`` objects, paced at 50 per second."""

    kind = "audio"

    def __init__(self, packets: list[av.Packet]) -> None:
        super().__init__()
        self.packets = packets
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> Any:
        """The next packet, at its time."""
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        due = self._start + self._index * AUDIO_SAMPLES / AUDIO_RATE
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 1.0:
            self._start = now - self._index * AUDIO_SAMPLES / AUDIO_RATE
        packet = self.packets[self._index % len(self.packets)]
        packet.pts = self._index * AUDIO_SAMPLES
        packet.time_base = AUDIO_TIME_BASE
        self._index += 1
        return packet


@dataclass
class StreamCounter:
    """RTP packets of one played track: received, expected from sequence numbers, frames (marker bits)."""

    kind: str
    received: int = 0
    frames: int = 0
    first: int = -1
    highest: int = -1
    """Extended (unwrapped) sequence numbers."""

    @property
    def expected(self) -> int:
        """highest - first + 1 (0 before the first packet)."""
        return self.highest - self.first + 1 if self.first >= 0 else 0

    def on_packet(self, packet: RtpPacket) -> None:
        """Count one packet."""
        self.received += 1
        if packet.marker:
            self.frames += 1
        seq = packet.sequence_number
        if self.first < 0:
            self.first = self.highest = seq
            return
        delta = (seq - (self.highest & 0xFFFF)) & 0xFFFF
        if delta < 0x8000:  # forward (a reordered or duplicate packet counts as received only)
            self.highest += delta


def install(receiver: RTCRtpReceiver, counter: StreamCounter) -> None:
    """Replace the receiver's RTP handler by a counter: no jitter buffer, no decoding."""

    async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
        counter.on_packet(packet)

    replace_receive_handler(receiver, handle_rtp)


def prefer(transceiver: Any, kind: str, mime: str) -> None:
    """Offer one codec only (no RTX)."""
    codecs = [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == mime]
    transceiver.setCodecPreferences(codecs)


class MediaClients:
    """The rooms of this process."""

    def __init__(self) -> None:
        self.clip: EncodedClip | None = None
        self.opus: list[av.Packet] = []
        self.audio = True
        self.probe = Probe()
        self.counters: dict[str, StreamCounter] = {}
        self.pcs: list[RTCPeerConnection] = []
        self.sockets: list[Client] = []

    async def prepare(self, command: dict[str, Any]) -> dict[str, Any]:
        """Encode the VP8 clip (and the Opus packets) once."""
        self.audio = bool(command.get("audio", True))
        self.clip = await asyncio.to_thread(encode_clip, 150)
        if self.audio:
            self.opus = await asyncio.to_thread(encode_opus)
        text = (f"{len(self.clip.packets)} pre-encoded VP8 frames 640x480 (libvpx, {self.clip.bitrate / 1e6:.2f} "
                f"Mbit/s at 30 fps, a keyframe every 2 s)")
        if self.audio:
            text += f" + {len(self.opus)} pre-encoded Opus packets (20 ms, 64 kbit/s stereo)"
        return {"clip": text}

    async def add_room(self, command: dict[str, Any]) -> dict[str, Any]:
        """Three participants join ``room``, each publishes and plays the other two; wait for media."""
        assert self.clip is not None
        url, room = command["url"], command["room"]
        members = [Client(url, f"{room}-p{i}") for i in range(3)]
        self.sockets.extend(members)
        for member in members:
            await member.open()
            await member.hello_join(room)
        streams: list[str] = []
        for member in members:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            self.pcs.append(pc)
            prefer(pc.addTransceiver(PacketTrack(self.clip, self.probe), direction="sendonly"), "video",
                   "video/vp8")
            if self.audio:
                prefer(pc.addTransceiver(OpusPacketTrack(self.opus), direction="sendonly"), "audio", "audio/opus")
            await pc.setLocalDescription(await pc.createOffer())
            reply = await member.request({"type": "publish", "kind": "camera", "sdp": pc.localDescription.sdp})
            if reply.get("type") != "answer":
                raise RuntimeError(f"publish refused: {reply}")
            await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
            streams.append(str(reply["pc"]))
        deadline = time.monotonic() + READY_TIMEOUT
        for member, stream in zip(members, streams, strict=True):
            while member.statuses.get(stream) != "PUBLISHING":
                if member.statuses.get(stream) == "FAILED" or time.monotonic() > deadline:
                    raise RuntimeError(f"stream {stream} is {member.statuses.get(stream)}, not PUBLISHING")
                await asyncio.sleep(0.1)
        added: list[StreamCounter] = []
        for index, member in enumerate(members):
            for other, stream in enumerate(streams):
                if other == index:
                    continue
                pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                self.pcs.append(pc)
                video = pc.addTransceiver("video", direction="recvonly")
                prefer(video, "video", "video/vp8")
                counter = StreamCounter("video")
                install(video.receiver, counter)
                self.counters[f"{room}/{index}/{stream}/video"] = counter
                added.append(counter)
                if self.audio:
                    audio = pc.addTransceiver("audio", direction="recvonly")
                    prefer(audio, "audio", "audio/opus")
                    counter = StreamCounter("audio")
                    install(audio.receiver, counter)
                    self.counters[f"{room}/{index}/{stream}/audio"] = counter
                    added.append(counter)
                await pc.setLocalDescription(await pc.createOffer())
                reply = await member.request({"type": "play", "stream": stream, "sdp": pc.localDescription.sdp})
                if reply.get("type") != "answer":
                    raise RuntimeError(f"play refused: {reply}")
                await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        deadline = time.monotonic() + READY_TIMEOUT
        while any(c.frames == 0 for c in added):
            if time.monotonic() > deadline:
                missing = sum(1 for c in added if c.frames == 0)
                raise RuntimeError(f"{missing} of {len(added)} played tracks got nothing in {READY_TIMEOUT:g} s")
            await asyncio.sleep(0.2)
        return {"ok": True}

    async def snapshot(self, command: dict[str, Any]) -> dict[str, Any]:
        """Cumulative counters of every played track and this process's CPU seconds."""
        return {
            "cpu": cpu_seconds(),
            "streams": {k: {"kind": c.kind, "frames": c.frames, "received": c.received, "expected": c.expected}
                        for k, c in self.counters.items()},
        }

    async def close(self) -> None:
        """Close every peer connection and socket (bounded)."""
        try:
            await asyncio.wait_for(asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True), 20)
        except TimeoutError:
            pass
        await asyncio.gather(*(s.close() for s in self.sockets), return_exceptions=True)


async def main() -> None:
    """Serve commands from benchmarks.load until told to exit, then close everything."""
    clients = MediaClients()
    try:
        await serve_commands({"prepare": clients.prepare, "add_room": clients.add_room,
                              "snapshot": clients.snapshot})
    finally:
        await clients.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(main())
