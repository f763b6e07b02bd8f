"""Data model of the Room API: Room, Participant, Stream and Message."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from rooms.protocol import LIVE_STREAM_STATUSES, ParticipantState, Role, StreamKind, StreamStatus


def choices(vocabulary: type[StrEnum]) -> list[tuple[str, str]]:
    """Field choices from a protocol enum, labelled as TextChoices would label them ("PENDING" -> "Pending")."""
    return [(member.value, member.name.replace("_", " ").title()) for member in vocabulary]


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

    State = ParticipantState
    Role = Role

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="participants")
    login = models.CharField(max_length=64)
    state = models.CharField(
        max_length=16, choices=choices(ParticipantState), default=ParticipantState.CONNECTED.value, db_index=True
    )
    role = models.CharField(max_length=16, choices=choices(Role), default=Role.PUBLISHER.value)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    channel_name = models.CharField(max_length=200, blank=True, help_text="Channel of the live connection.")
    joined_at = models.DateTimeField(auto_now_add=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True)
    resume_secret_hash = models.CharField(
        max_length=64, blank=True, editable=False, help_text="SHA-256 of the secret that resumes it after a drop."
    )
    token_subject = models.CharField(
        max_length=64, blank=True, help_text="Subject of the join token it joined with (empty for a guest or user)."
    )

    class Meta:
        ordering = ["joined_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["room", "login"],
                condition=~Q(state=ParticipantState.LEFT.value),
                name="unique_present_login_per_room",
            )
        ]

    def __str__(self) -> str:
        return f"{self.login} in {self.room.name}"


def new_stream_id() -> str:
    """A random public stream id."""
    return uuid.uuid4().hex


class Stream(models.Model):
    """A published media stream (camera or screen) of a participant."""

    Kind = StreamKind
    Status = StreamStatus

    public_id = models.CharField(max_length=32, unique=True, default=new_stream_id, editable=False)
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="streams")
    name = models.CharField(max_length=160)
    kind = models.CharField(max_length=16, choices=choices(StreamKind), default=StreamKind.CAMERA.value)
    status = models.CharField(
        max_length=16, choices=choices(StreamStatus), default=StreamStatus.PENDING.value, db_index=True
    )
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
        return self.status in LIVE_STREAM_STATUSES


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


# --- Access: account roles and API keys ------------------------------------------


class UserRole(models.Model):
    """The role a logged-in Django user gets in rooms (publisher unless an admin sets otherwise)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_role")
    role = models.CharField(max_length=16, choices=choices(Role), default=Role.PUBLISHER.value)

    def __str__(self) -> str:
        return f"{self.user} as {self.role}"


def _hash_key(raw: str) -> str:
    import hashlib

    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class APIKey(models.Model):
    """A key for the REST API; only its SHA-256 hash is stored (keys are 256-bit random)."""

    name = models.CharField(max_length=100, help_text="Who or what uses this key.")
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def set_new_key(self) -> str:
        """Give this key a fresh secret and return it (shown once, never stored)."""
        import secrets

        self.prefix = secrets.token_hex(4)
        raw = f"{self.prefix}.{secrets.token_urlsafe(32)}"
        self.hashed_key = _hash_key(raw)
        return raw

    @classmethod
    def create_key(cls, name: str) -> tuple[APIKey, str]:
        """A new active key and its raw value."""
        key = cls(name=name)
        raw = key.set_new_key()
        key.save()
        return key, raw

    @classmethod
    def from_raw(cls, raw: str) -> APIKey | None:
        """The active key matching ``raw``, or None."""
        import hmac

        prefix = raw.split(".", 1)[0]
        key = cls.objects.filter(prefix=prefix, active=True).first()
        if key is None or not hmac.compare_digest(key.hashed_key, _hash_key(raw)):
            return None
        return key


# --- Webhooks ---------------------------------------------------------------------------


WEBHOOK_EVENTS = (
    "room_started",
    "room_finished",
    "participant_joined",
    "participant_left",
    "stream_published",
    "stream_unpublished",
    "recording_finished",
    "message_sent",
)
DEFAULT_WEBHOOK_EVENTS = [e for e in WEBHOOK_EVENTS if e != "message_sent"]


def default_webhook_events() -> list[str]:
    """Every event except the opt-in message_sent."""
    return list(DEFAULT_WEBHOOK_EVENTS)


class WebhookEndpoint(models.Model):
    """An external URL that receives signed event notifications."""

    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200, help_text="Shared secret for the X-Webhook-Signature HMAC.")
    events = models.JSONField(default=default_webhook_events, blank=True, help_text="Event types to send.")
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        """True when this endpoint subscribed to ``event_type``."""
        return self.active and event_type in (self.events or [])


class WebhookDelivery(models.Model):
    """One event to one endpoint, with its attempts; the delivery log."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    event_type = models.CharField(max_length=32, db_index=True)
    sequence_key = models.CharField(max_length=64, blank=True, help_text="Events with one key go out in order.")
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} -> {self.endpoint}"



def _token_revocation_expiry() -> datetime:
    """Fallback expiry of a revocation row (rooms.tokens.revoke sets it explicitly)."""
    return timezone.now() + timedelta(seconds=max(int(settings.JOIN_TOKEN_MAX_TTL), 1))


class RevokedToken(models.Model):
    """A join token refused at hello before it expires (rooms.tokens.revoke; REST DELETE or the admin)."""

    jti = models.CharField(max_length=64, unique=True, help_text="The token's jti claim.")
    room = models.CharField(max_length=128, blank=True, help_text="The room the token was for, when known.")
    reason = models.CharField(max_length=200, blank=True)
    revoked_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(
        default=_token_revocation_expiry, db_index=True,
        help_text="After this the token has expired anyway and the row may go (manage.py cleanup).",
    )

    class Meta:
        ordering = ["-revoked_at"]

    def __str__(self) -> str:
        return f"{self.jti} ({self.room or 'any room'})"


from rooms.recording_models import Recording  # noqa: E402,F401  (registers the model with the rooms app)
