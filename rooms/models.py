"""Data model of the Room API: Room, Participant, Stream and Message."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Room(models.Model):
    """A named meeting place; active until finalized.

    Only one active room may carry a name at a time; after it is finalized a
    later join with the same name creates a new room.
    """

    name = models.CharField(max_length=128, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finalized_at = models.DateTimeField(null=True, blank=True, db_index=True)
    max_participants = models.PositiveIntegerField()
    record = models.BooleanField(default=False, help_text="Record every stream and mix them when the room ends.")
    locked = models.BooleanField(default=False, help_text="A locked room admits no new participants.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=Q(finalized_at__isnull=True), name="unique_active_room_name"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def group_name(self) -> str:
        """The channel-layer group of this room (never derived from user text)."""
        return f"room-{self.pk}"

    @property
    def is_active(self) -> bool:
        """True until the room is finalized."""
        return self.finalized_at is None


class Participant(models.Model):
    """A user present in (or once present in) a room, identified by login."""

    class State(models.TextChoices):
        CONNECTED = "connected"
        DISCONNECTED = "disconnected"
        LEFT = "left"

    class Role(models.TextChoices):
        MODERATOR = "moderator"
        PUBLISHER = "publisher"
        VIEWER = "viewer"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="participants")
    login = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.CONNECTED, db_index=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.PUBLISHER)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    channel_name = models.CharField(max_length=200, blank=True, help_text="Channel of the live connection.")
    joined_at = models.DateTimeField(auto_now_add=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["joined_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["room", "login"], condition=~Q(state="left"), name="unique_present_login_per_room"
            )
        ]

    def __str__(self) -> str:
        return f"{self.login} in {self.room.name}"

    @property
    def is_present(self) -> bool:
        """Connected or disconnected but not yet expired."""
        return self.state != self.State.LEFT


def new_stream_id() -> str:
    """A random public stream id."""
    return uuid.uuid4().hex


class Stream(models.Model):
    """A published media stream (camera or screen) of a participant."""

    class Kind(models.TextChoices):
        CAMERA = "camera"
        SCREEN = "screen"

    class Status(models.TextChoices):
        PENDING = "PENDING"
        PUBLISHING = "PUBLISHING"
        UNPUBLISHED = "UNPUBLISHED"
        FAILED = "FAILED"

    public_id = models.CharField(max_length=32, unique=True, default=new_stream_id, editable=False)
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="streams")
    name = models.CharField(max_length=160)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CAMERA)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    audio_muted = models.BooleanField(default=False)
    video_muted = models.BooleanField(default=False)
    has_audio = models.BooleanField(default=False)
    has_video = models.BooleanField(default=False)
    audio_codec = models.CharField(max_length=32, blank=True)
    video_codec = models.CharField(max_length=32, blank=True)
    record = models.BooleanField(default=False)
    reason = models.CharField(max_length=200, blank=True, help_text="Why the stream failed.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_live(self) -> bool:
        """Negotiating or publishing."""
        return self.status in (self.Status.PENDING, self.Status.PUBLISHING)


class Message(models.Model):
    """A text message to everyone in a room or to chosen participants."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="sent")
    sender_login = models.CharField(max_length=64, help_text="Login of the sender; empty for server messages.")
    to_everyone = models.BooleanField(default=True)
    recipients = models.ManyToManyField(Participant, blank=True, related_name="received")
    recipient_logins = models.JSONField(default=list, blank=True)
    text = models.TextField()
    sent_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["sent_at", "pk"]

    def __str__(self) -> str:
        return f"{self.sender_login or 'server'}: {self.text[:40]}"
