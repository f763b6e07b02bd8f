"""Read back what a media file holds (duration, streams), tolerant of files cut by a crash."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av

logger = logging.getLogger(__name__)


@dataclass
class FileInfo:
    """What a recorded file holds."""

    duration: float
    has_audio: bool
    has_video: bool
    audio_codec: str
    video_codec: str
    size: int


def probe(path: Path) -> FileInfo:
    """Demux (without decoding) the whole file: the duration is where its last packet ends.

    Works on files without a trailer (the writer was killed): the header says
    nothing about the duration then, the packets do.
    """
    size = path.stat().st_size
    with av.open(str(path)) as container:
        audio = next(iter(container.streams.audio), None)
        video = next(iter(container.streams.video), None)
        first: float | None = None
        last = 0.0
        try:
            for packet in container.demux():
                if packet.pts is None or packet.time_base is None:
                    continue
                start = float(packet.pts * packet.time_base)
                end = start + float((packet.duration or 0) * packet.time_base)
                first = start if first is None else min(first, start)
                last = max(last, end)
        except (av.error.InvalidDataError, av.error.EOFError) as exc:
            logger.info("%s ends abruptly (%s); using what precedes", path.name, exc)
        return FileInfo(
            duration=max(0.0, last - (first or 0.0)),
            has_audio=audio is not None,
            has_video=video is not None,
            audio_codec=audio.codec_context.name if audio else "",
            video_codec=video.codec_context.name if video else "",
            size=size,
        )
