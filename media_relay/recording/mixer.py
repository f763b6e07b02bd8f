"""The mix graph: per-stream files placed on one timeline become one grid video with mixed audio.

:func:`run_mix` drives one ffmpeg process (decode every input file, place each
tile at its time offset, draw its label, amix the audio, encode H.264/AAC in
MP4) and reports progress through a callback; it blocks, so run it in a worker
thread.  Which files to mix and where to keep the progress is the caller's
business (the layer above).
"""

from __future__ import annotations

import logging
import math
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from media_relay.recording.probe import FileInfo

logger = logging.getLogger(__name__)



class MixError(Exception):
    """The mix cannot be made; the message is the reason to store."""


@dataclass
class MixInput:
    """One input file placed on the mix's timeline."""

    path: Path
    info: FileInfo
    offset: float
    """Seconds from the start of the mix to the file's first media."""
    label: str = ""
    """Text drawn on the file's tile (empty: a numbered default)."""


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
        command += ["-i", str(item.path)]
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
                text_file.write_text(item.label or f"stream {slot + 1}", encoding="utf-8")
                labels.append(
                    f"drawtext=fontfile='{_escape(settings.RECORDING_MIX_FONT)}':"
                    f"textfile='{_escape(str(text_file))}':expansion=none:"
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


def watchdog_seconds(duration: float) -> float:
    """How long a mix of ``duration`` media seconds may run before it is killed (proportional to the media)."""
    return settings.RECORDING_MIX_TIMEOUT_BASE + settings.RECORDING_MIX_TIMEOUT_FACTOR * duration


def run_mix(inputs: list[MixInput], duration: float, output: Path, on_progress: Callable[[float], None]) -> None:
    """Mix ``inputs`` into ``output`` (blocking); ``on_progress`` gets the percent done at most twice a second."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mix-") as workdir:
        command = build_command(inputs, duration, output, Path(workdir))
        logger.info("mixing %d inputs into %s, %.1f s", len(inputs), output.name, duration)
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        errors: deque[str] = deque(maxlen=15)
        reader = threading.Thread(target=lambda: errors.extend(process.stderr or []), daemon=True)
        reader.start()
        last_reported = 0.0
        assert process.stdout is not None
        # A stalled graph must not spin forever: kill ffmpeg past a generous bound and fail the mix.
        timeout = watchdog_seconds(duration)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            process.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.daemon = True
        watchdog.start()
        for line in process.stdout:
            key, _, value = line.strip().partition("=")
            if key in ("out_time_us", "out_time_ms") and value.isdigit():
                percent = min(99.0, int(value) / 1_000_000 / duration * 100)
                if time.monotonic() - last_reported > 0.5:
                    last_reported = time.monotonic()
                    on_progress(round(percent, 1))
        code = process.wait()
        watchdog.cancel()
        reader.join(5)
    if killed.is_set():
        raise MixError(f"the mix took longer than {timeout:.0f} s for {duration:.1f} s of media and was stopped")
    if code != 0:
        detail = " | ".join(line.strip() for line in errors if line.strip())
        raise MixError(f"ffmpeg failed (exit code {code}): {detail[-1500:]}")
