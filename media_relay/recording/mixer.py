"""The room mix: after a recorded room ends, its per-stream files become one grid video with mixed audio.

The job runs in a worker thread that drives one ffmpeg process (decode every
file, place each tile at its time offset, draw names, amix the audio, encode
H.264/AAC in MP4).  Progress is read from ``ffmpeg -progress`` and stored on
the mixed Recording; a failure is stored with its reason and can be re-run.
"""

from __future__ import annotations

import logging
import math
import subprocess
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from media_relay.models import Recording
from media_relay.recording.probe import FileInfo, probe
from media_relay.recording.store import mixed_file_name, send_finished
from rooms.models import Room

logger = logging.getLogger(__name__)

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording-mix")
_lock = threading.Lock()


class MixError(Exception):
    """The mix cannot be made; the message is the reason stored on the recording."""


@dataclass
class MixInput:
    """One per-stream file placed on the room's timeline."""

    recording: Recording
    info: FileInfo
    offset: float


def on_room_finished(sender: Any, room: Room, **kwargs: Any) -> None:
    """room_finished receiver: queue the mix of a recorded room (only enqueues)."""
    if room.record:
        enqueue_mix(room.pk)


def enqueue_mix(room_id: int, recording_id: int | None = None) -> Future[int | None]:
    """Run (or re-run) the mix of a room in the background; the future gives the mixed Recording's pk."""
    return _executor.submit(_job, room_id, recording_id)


def _job(room_id: int, recording_id: int | None) -> int | None:
    close_old_connections()
    try:
        return mix_room(room_id, recording_id).pk
    except Exception:
        logger.exception("mixing room %s failed", room_id)
        return None
    finally:
        connection.close()


def mix_room(room_id: int, recording_id: int | None = None) -> Recording:
    """Mix a finished room's per-stream recordings into one file (blocking; call from a worker)."""
    room = Room.objects.get(pk=room_id)
    with _lock:
        if recording_id is not None:
            mixed = Recording.objects.get(pk=recording_id, kind=Recording.Kind.MIXED)
        else:
            mixed = Recording.objects.filter(room=room, kind=Recording.Kind.MIXED).first() or Recording(
                kind=Recording.Kind.MIXED, room=room
            )
        mixed.status, mixed.reason, mixed.progress = Recording.Status.RECORDING, "", 0.0
        mixed.started_at, mixed.finished_at = timezone.now(), None
        if not mixed.file_name:
            mixed.file_name = mixed_file_name(room.pk, mixed.public_id)
        mixed.save()
    try:
        inputs = _gather_inputs(room)
        duration = _room_duration(room, inputs)
        _run_ffmpeg(mixed, inputs, duration)
        info = probe(mixed.path)  # type: ignore[arg-type]
    except MixError as exc:
        return _fail(mixed, str(exc))
    except Exception as exc:
        logger.exception("mix of room %s failed", room.pk)
        return _fail(mixed, f"unexpected error: {exc}")
    mixed.status, mixed.reason, mixed.progress = Recording.Status.DONE, "", 100.0
    mixed.duration, mixed.size = info.duration, info.size
    mixed.audio_codec, mixed.video_codec = info.audio_codec, info.video_codec
    mixed.finished_at = timezone.now()
    mixed.save()
    logger.info("room %s mixed into %s (%.1f s)", room.pk, mixed.file_name, info.duration)
    send_finished(mixed)
    return mixed


def _fail(mixed: Recording, reason: str) -> Recording:
    logger.warning("mix %s failed: %s", mixed.public_id, reason)
    mixed.status, mixed.reason, mixed.finished_at = Recording.Status.FAILED, reason[:2000], timezone.now()
    mixed.save(update_fields=["status", "reason", "finished_at"])
    return mixed


def _gather_inputs(room: Room) -> list[MixInput]:
    streams = Recording.objects.filter(room=room, kind=Recording.Kind.STREAM)
    deadline = time.monotonic() + settings.RECORDING_MIX_WAIT_SECONDS
    while streams.filter(status=Recording.Status.RECORDING).exists() and time.monotonic() < deadline:
        time.sleep(0.25)
    recordings = list(streams.order_by("start_offset", "pk"))
    if not recordings:
        raise MixError("the room has no per-stream recordings to mix")
    missing = [r for r in recordings if not r.file_exists]
    if missing:
        names = ", ".join(f"{r.public_id} ({r.file_name or 'no file'})" for r in missing)
        raise MixError(f"input files missing: {len(missing)} of {len(recordings)} per-stream recordings: {names}")
    inputs = []
    for recording in recordings:
        try:
            info = probe(recording.path)  # type: ignore[arg-type]
        except Exception as exc:
            raise MixError(f"input file unreadable: {recording.public_id} ({recording.file_name}): {exc}") from None
        if info.duration > 0:
            inputs.append(MixInput(recording, info, recording.start_offset))
    if not inputs:
        raise MixError("every per-stream recording is empty")
    return inputs


def _room_duration(room: Room, inputs: list[MixInput]) -> float:
    ends = max(i.offset + i.info.duration for i in inputs)
    if room.finalized_at is not None:
        return max(0.5, (room.finalized_at - room.created_at).total_seconds(), ends)
    return max(0.5, ends)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")


def build_command(inputs: list[MixInput], duration: float, output: Path, workdir: Path) -> list[str]:
    """The ffmpeg command of a mix (names go through text files, never into the filter string)."""
    width, height = settings.RECORDING_MIX_TILE_WIDTH, settings.RECORDING_MIX_TILE_HEIGHT
    fps = settings.RECORDING_MIX_FPS
    has_video = settings.RECORDING_MIX_HAS_VIDEO
    has_audio = settings.RECORDING_MIX_HAS_AUDIO
    tiles = [(n, i) for n, i in enumerate(inputs) if i.info.has_video] if has_video else []
    voices = [(n, i) for n, i in enumerate(inputs) if i.info.has_audio] if has_audio else []
    if not tiles and not voices:
        raise MixError("nothing to mix: no input has the media the mix settings ask for")
    command = [settings.RECORDING_FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for item in inputs:
        command += ["-i", str(item.recording.path)]
    graph: list[str] = []
    maps: list[str] = []
    if has_video:
        count = max(1, len(tiles))
        columns = settings.RECORDING_MIX_COLUMNS or math.ceil(math.sqrt(count))
        rows = math.ceil(count / columns)
        graph.append(f"color=c=black:s={columns * width}x{rows * height}:r={fps}:d={duration:.3f}[base]")
        last = "base"
        eof = "pass" if settings.RECORDING_MIX_AFTER_END == "black" else "repeat"
        labels = []
        for slot, (n, item) in enumerate(tiles):
            x, y = (slot % columns) * width, (slot // columns) * height
            graph.append(
                f"[{n}:v]setpts=PTS-STARTPTS,scale={width}:{height}:force_original_aspect_ratio=decrease,"
                f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:black,setsar=1,fps={fps},"
                f"setpts=PTS+{item.offset:.3f}/TB[t{slot}]"
            )
            graph.append(f"[{last}][t{slot}]overlay=x={x}:y={y}:eof_action={eof}:repeatlast=1[o{slot}]")
            last = f"o{slot}"
            if settings.RECORDING_MIX_DISPLAY_STREAM_NAME:
                text_file = workdir / f"name-{slot}.txt"
                text_file.write_text(item.recording.participant_login or f"stream {slot + 1}", encoding="utf-8")
                labels.append(
                    f"drawtext=fontfile='{_escape(FONT)}':textfile='{_escape(str(text_file))}':"
                    f"x={x + 8}:y={y + height - 28}:fontsize=18:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=4"
                )
        graph.append(f"[{last}]{','.join(labels) if labels else 'null'},format=yuv420p[vout]")
        maps += ["-map", "[vout]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-r", str(fps)]
    if has_audio:
        if voices:
            for slot, (n, item) in enumerate(voices):
                delay = round(item.offset * 1000)
                graph.append(
                    f"[{n}:a]asetpts=PTS-STARTPTS,aresample=48000:async=1:first_pts=0,"
                    f"aformat=sample_fmts=fltp:channel_layouts=stereo,adelay={delay}:all=1[a{slot}]"
                )
            mix_inputs = "".join(f"[a{slot}]" for slot in range(len(voices)))
            graph.append(f"{mix_inputs}amix=inputs={len(voices)}:duration=longest:dropout_transition=0:normalize=0,"
                         f"apad=whole_dur={duration:.3f}[aout]")
        else:
            graph.append("anullsrc=r=48000:cl=stereo[aout]")
        maps += ["-map", "[aout]", "-c:a", "aac", "-b:a", "128k"]
    command += ["-filter_complex", ";".join(graph), *maps, "-t", f"{duration:.3f}", "-shortest",
                "-movflags", "+faststart", "-progress", "pipe:1", "-nostats", str(output)]
    return command


def _run_ffmpeg(mixed: Recording, inputs: list[MixInput], duration: float) -> None:
    output = mixed.path
    assert output is not None
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mix-") as workdir:
        command = build_command(inputs, duration, output, Path(workdir))
        logger.info("mixing room %s: %d inputs, %.1f s", mixed.room_id, len(inputs), duration)
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        errors: deque[str] = deque(maxlen=15)
        reader = threading.Thread(target=lambda: errors.extend(process.stderr or []), daemon=True)
        reader.start()
        last_saved = 0.0
        assert process.stdout is not None
        # A stalled graph must not spin forever: kill ffmpeg past a generous bound and fail the mix.
        watchdog = threading.Timer(60.0 + 20.0 * duration, process.kill)
        watchdog.daemon = True
        watchdog.start()
        for line in process.stdout:
            key, _, value = line.strip().partition("=")
            if key in ("out_time_us", "out_time_ms") and value.isdigit():
                percent = min(99.0, int(value) / 1_000_000 / duration * 100)
                if time.monotonic() - last_saved > 0.5:
                    last_saved = time.monotonic()
                    Recording.objects.filter(pk=mixed.pk).update(progress=round(percent, 1))
        code = process.wait()
        watchdog.cancel()
        reader.join(5)
    if code != 0:
        detail = " | ".join(line.strip() for line in errors if line.strip())
        raise MixError(f"ffmpeg failed (exit code {code}): {detail[-1500:]}")
