"""The recorder: a packet sink on a publication that feeds one writer process per recorded stream.

Started by the media worker when the port answers a flowing publication with a
:class:`~media_relay.contract.RecordingTarget`; reports
:class:`~media_relay.contract.RecordingFinished` when the file is closed.  ``write``
runs on the media event loop for every packet: it only rebuilds the RTP header
and hands the bytes to a non-blocking socket.  Nothing is written before the
first video keyframe (audio included), so files never start black and audio
and video start together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media_relay.contract import RecordingFinished, RecordingFormat, RecordingTarget
from media_relay.port import media_events
from media_relay.recording.limits import RecordingLimits, disk_refusal, limit_reached
from media_relay.recording.writer import RtpFileWriter, TrackSpec, container_for
from media_relay.rtp import build_packet, keyframe_start

if TYPE_CHECKING:
    from media_relay.peers import Publication

logger = logging.getLogger(__name__)

SUPPORTED = {"VP8", "VP9", "H264", "OPUS", "PCMU", "PCMA"}
SSRC = {"video": 0x5EC0_0001, "audio": 0x5EC0_0002}
LIMIT_CHECK_INTERVAL = 1.0

_tasks: set[asyncio.Task[Any]] = set()


def _keep(task: asyncio.Task[Any]) -> None:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


class RecordingSink:
    """Records one publication (its audio and video) into one file through a writer process."""

    def __init__(self, token: str, writer: RtpFileWriter, publication: Publication) -> None:
        self.token = token
        self.writer = writer
        self.tracks = writer.tracks
        self.video_ingest = publication.ingests.get("video") if "video" in self.tracks else None
        self.started = False
        self.first_packet_at: float | None = None
        self.packets = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the writer process and the task that finalizes the recording."""
        self._task = asyncio.ensure_future(self._run())
        _keep(self._task)

    def write(self, kind: str, codec: RTCRtpCodecParameters, packet: RtpPacket) -> None:
        """One received RTP packet (after RTX unwrapping): cheap, never blocks."""
        track = self.tracks.get(kind)
        if track is None or codec.payloadType != track.payload_type or self._stop.is_set():
            return
        if not self.started:
            if self.video_ingest is not None and not (kind == "video" and keyframe_start(codec.name, packet.payload)):
                if kind == "video":
                    self.video_ingest.request_keyframe()
                return
            self.started = True
            self.first_packet_at = time.time()
        self.packets += 1
        self.writer.send(
            kind,
            build_packet(
                track.payload_type, packet.marker, packet.sequence_number, packet.timestamp, SSRC[kind], packet.payload
            ),
        )

    def close(self) -> None:
        """The publication ended: ask the writer to finish the file (idempotent, synchronous)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.writer.request_stop()

    async def _run(self) -> None:
        limits = RecordingLimits.from_settings()
        refusal = await asyncio.to_thread(disk_refusal, limits, self.writer.path.parent)
        if refusal:
            logger.warning("recording %s: %s", self.token, refusal)
            self._stop.set()
            self.writer.close_socket()
            await _finished(RecordingFinished(self.token, failure=refusal))
            return
        try:
            await self.writer.start()
        except Exception as exc:
            logger.exception("recording %s could not start", self.token)
            self.writer.close_socket()
            await _finished(RecordingFinished(self.token, failure=f"the recorder did not start: {exc}"))
            return
        if self.video_ingest is not None and not self.started:
            self.video_ingest.request_keyframe(immediate=True)
        process = self.writer.process
        assert process is not None
        exited = asyncio.ensure_future(process.wait())
        stop = asyncio.ensure_future(self._stop.wait())
        stopped = await self._watch_limits(limits, {exited, stop})
        failure = ""
        if not self._stop.is_set() and process.returncode == 0:
            stop.cancel()
            self.writer.close_socket()
            logger.warning("recording %s: the writer ended after a long time without media", self.token)
        elif not self._stop.is_set():
            stop.cancel()
            self.writer.close_socket()
            detail = " | ".join(self.writer.stderr_tail)[-300:]
            failure = (
                f"the recording process exited unexpectedly (code {process.returncode}); "
                f"the file plays up to that moment{': ' + detail if detail else ''}"
            )
            logger.error("recording %s: %s", self.token, failure)
        else:
            exited.cancel()
            self.writer.request_stop()
            await self.writer.wait()
        if self.writer.dropped:
            logger.warning("recording %s: %d packets dropped", self.token, self.writer.dropped)
        await _finished(
            RecordingFinished(
                self.token, failure=failure, first_packet_at=self.first_packet_at,
                detail=" | ".join(self.writer.stderr_tail)[-300:], stopped=stopped,
            )
        )

    async def _watch_limits(self, limits: RecordingLimits, ends: set[asyncio.Future[Any]]) -> str:
        """Wait for the writer's end or a stop; stop the recording when a cap is reached (its reason)."""
        while True:
            done, _ = await asyncio.wait(ends, timeout=LIMIT_CHECK_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
            if done:
                return ""
            seconds = time.time() - self.first_packet_at if self.first_packet_at is not None else 0.0
            reason = await asyncio.to_thread(limit_reached, limits, self.writer.path, seconds)
            if reason:
                logger.info("recording %s: %s", self.token, reason)
                self.close()
                await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
                return reason


async def _finished(result: RecordingFinished) -> None:
    try:
        await media_events().recording_finished(result)
    except Exception:
        logger.exception("reporting the end of recording %s failed", result.token)


def track_specs(publication: Publication) -> list[TrackSpec]:
    """The recordable tracks of a publication, from the codecs its media arrived with."""
    specs = []
    for kind, ingest in publication.ingests.items():
        codec = ingest.codec
        if codec is None:
            continue
        name = codec.mimeType.split("/")[1].upper()
        if name not in SUPPORTED:
            logger.warning("stream %s: cannot record %s", publication.stream_id, codec.mimeType)
            continue
        specs.append(
            TrackSpec(kind, codec.payloadType or 0, name, codec.clockRate, codec.channels, dict(codec.parameters or {}))
        )
    return specs


def recording_format(publication: Publication) -> RecordingFormat | None:
    """What a recording of the publication would be (None: none of its tracks can be recorded)."""
    tracks = track_specs(publication)
    if not tracks:
        return None
    _, extension = container_for(tracks)
    codecs = {t.kind: t.name.lower() for t in tracks}
    return RecordingFormat(extension, codecs.get("audio", ""), codecs.get("video", ""))


async def start_recording(publication: Publication, target: RecordingTarget) -> None:
    """Record a publication into ``target.path`` (the port chose it)."""
    tracks = track_specs(publication)
    if publication.closed or not tracks:
        await _finished(RecordingFinished(target.token, failure="the stream ended before recording started"))
        return
    sink = RecordingSink(target.token, RtpFileWriter(target.path, tracks), publication)
    for kind in sink.tracks:
        publication.ingests[kind].sinks.append(sink)
    sink.start()


async def wait_for_recordings(timeout: float = 20.0) -> None:
    """Wait (bounded) until every recording of this process is finalized: call on worker shutdown."""
    pending = [t for t in _tasks if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
