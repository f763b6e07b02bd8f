"""The caps on one stream's recording: its length, its file size and the free disk left.

A cap reached stops the recording (the file is closed normally and plays up to
that moment) with a reason that names the setting; the call goes on.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class RecordingLimits:
    """The caps in force (0 = no cap)."""

    max_seconds: float
    max_bytes: int
    min_free_bytes: int

    @classmethod
    def from_settings(cls) -> RecordingLimits:
        """RECORDING_MAX_SECONDS, RECORDING_MAX_BYTES and RECORDING_MIN_FREE_BYTES."""
        return cls(
            float(settings.RECORDING_MAX_SECONDS), int(settings.RECORDING_MAX_BYTES),
            int(settings.RECORDING_MIN_FREE_BYTES),
        )


def free_bytes(directory: Path) -> int:
    """Bytes free for an unprivileged writer on the file system of ``directory`` (or its nearest parent)."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return shutil.disk_usage(directory).free


def disk_refusal(limits: RecordingLimits, directory: Path) -> str:
    """Why a recording may not start in ``directory`` (empty: it may). Blocking: run in a thread."""
    if limits.min_free_bytes and free_bytes(directory) < limits.min_free_bytes:
        return (
            f"not recorded: less than RECORDING_MIN_FREE_BYTES ({limits.min_free_bytes} bytes) free on the "
            "recordings disk"
        )
    return ""


def limit_reached(limits: RecordingLimits, path: Path, seconds: float) -> str:
    """The reason to stop a recording ``seconds`` long writing ``path`` (empty: go on). Blocking: run in a thread."""
    if limits.max_seconds and seconds >= limits.max_seconds:
        return f"stopped at the maximum duration (RECORDING_MAX_SECONDS = {limits.max_seconds:g} s)"
    if limits.max_bytes:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        if size >= limits.max_bytes:
            return f"stopped at the maximum file size (RECORDING_MAX_BYTES = {limits.max_bytes} bytes)"
    if limits.min_free_bytes and free_bytes(path.parent) < limits.min_free_bytes:
        return f"stopped: the recordings disk fell below RECORDING_MIN_FREE_BYTES ({limits.min_free_bytes} bytes free)"
    return ""
