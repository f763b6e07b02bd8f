"""Recordings: one file per recorded stream, and the mixed file of a recorded room."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import models


def new_recording_id() -> str:
    """A random public recording id (also the base of its file name)."""
    return uuid.uuid4().hex


class Recording(models.Model):
    """A media file written by the recorder (per stream) or the mixer (per room)."""

    class Kind(models.TextChoices):
        STREAM = "stream", "per-stream"
        MIXED = "mixed", "room mix"

    class Status(models.TextChoices):
        RECORDING = "recording"
        DONE = "done"
        FAILED = "failed"

    public_id = models.CharField(max_length=32, unique=True, default=new_recording_id, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.STREAM, db_index=True)
    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="recordings")
    participant = models.ForeignKey(
        "rooms.Participant", null=True, blank=True, on_delete=models.SET_NULL, related_name="recordings"
    )
    stream = models.ForeignKey(
        "rooms.Stream", null=True, blank=True, on_delete=models.SET_NULL, related_name="recordings"
    )
    participant_login = models.CharField(max_length=64, blank=True, help_text="Shown on the tile of the mix.")
    file_name = models.CharField(max_length=200, blank=True, help_text="Relative to RECORDINGS_DIR; never user text.")
    audio_codec = models.CharField(max_length=32, blank=True)
    video_codec = models.CharField(max_length=32, blank=True)
    start_offset = models.FloatField(default=0.0, help_text="Seconds from the room's start to the first media.")
    duration = models.FloatField(null=True, blank=True, help_text="Seconds of media in the file.")
    size = models.BigIntegerField(null=True, blank=True, help_text="File size in bytes.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECORDING, db_index=True)
    reason = models.TextField(blank=True, help_text="Why the recording failed.")
    progress = models.FloatField(default=0.0, help_text="Percent done (mixing).")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "media_relay_recording"  # the table predates the move to rooms (migration rooms 0003)
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.public_id[:8]} of {self.room}"

    @property
    def path(self) -> Path | None:
        """The absolute file path, or None before a file is chosen."""
        return Path(settings.RECORDINGS_DIR) / self.file_name if self.file_name else None

    @property
    def file_exists(self) -> bool:
        """True when the file is on disk."""
        path = self.path
        return bool(path and path.is_file())
