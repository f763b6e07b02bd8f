"""REST shapes of rooms, participants, streams, messages and join tokens."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from rooms import protocol as p
from rooms import services
from rooms.exceptions import RoomError
from rooms.models import Message, Participant, Room, Stream
from rooms.permissions import GRANTS, ROLE_GRANTS
from rooms.protocol import LIVE_STREAM_STATUSES, ParticipantState, Role


def _clean(value: str, what: str, max_length: int) -> str:
    try:
        return p.clean_name(value, what=what, max_length=max_length)
    except p.ProtocolError as exc:
        raise serializers.ValidationError(exc.message) from None


class StreamSerializer(serializers.ModelSerializer):
    """A stream (its ``id`` is the public stream id used by the protocol)."""

    id = serializers.CharField(source="public_id", read_only=True)
    owner = serializers.CharField(source="participant.login", read_only=True)

    class Meta:
        model = Stream
        fields = (
            "id",
            "name",
            "kind",
            "owner",
            "status",
            "audio_muted",
            "video_muted",
            "has_audio",
            "has_video",
            "audio_codec",
            "video_codec",
            "record",
            "reason",
            "created_at",
            "started_at",
            "ended_at",
        )
        read_only_fields = fields


class ParticipantSerializer(serializers.ModelSerializer):
    """A participant of a room (live streams included)."""

    streams = serializers.SerializerMethodField()

    class Meta:
        model = Participant
        fields = ("login", "state", "role", "joined_at", "disconnected_at", "left_at", "streams")
        read_only_fields = fields

    @extend_schema_field(StreamSerializer(many=True))
    def get_streams(self, participant: Participant) -> list[dict[str, Any]]:
        live = [s for s in participant.streams.all() if s.is_live]
        return StreamSerializer(live, many=True).data  # type: ignore[return-value]


class RoomSerializer(serializers.ModelSerializer):
    """A room in lists: settings plus live counts."""

    active = serializers.BooleanField(source="is_active", read_only=True)
    participants_now = serializers.IntegerField(read_only=True, default=0)
    viewers_now = serializers.IntegerField(read_only=True, default=0)
    streams_now = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Room
        fields: tuple[str, ...] = (
            "id",
            "name",
            "active",
            "record",
            "locked",
            "max_participants",
            "created_at",
            "finalized_at",
            "participants_now",
            "viewers_now",
            "streams_now",
        )
        read_only_fields: tuple[str, ...] = fields


class RoomDetailSerializer(RoomSerializer):
    """A room with its present participants and live streams."""

    participants = serializers.SerializerMethodField()
    streams = serializers.SerializerMethodField()

    class Meta(RoomSerializer.Meta):
        fields = (*RoomSerializer.Meta.fields, "participants", "streams")
        read_only_fields = fields

    @extend_schema_field(ParticipantSerializer(many=True))
    def get_participants(self, room: Room) -> list[dict[str, Any]]:
        present = room.participants.exclude(state=ParticipantState.LEFT).prefetch_related("streams")
        return ParticipantSerializer(present, many=True).data  # type: ignore[return-value]

    @extend_schema_field(StreamSerializer(many=True))
    def get_streams(self, room: Room) -> list[dict[str, Any]]:
        live = Stream.objects.filter(participant__room=room, status__in=LIVE_STREAM_STATUSES)
        live = live.select_related("participant")
        return StreamSerializer(live, many=True).data  # type: ignore[return-value]


class RoomCreateSerializer(serializers.Serializer):
    """Open a room ahead of its participants."""

    name = serializers.CharField(max_length=p.MAX_NAME_LENGTH)
    max_participants = serializers.IntegerField(min_value=1, required=False)
    record = serializers.BooleanField(default=False)
    locked = serializers.BooleanField(default=False)

    def validate_name(self, value: str) -> str:
        return _clean(value, "room", p.MAX_NAME_LENGTH)

    def validate_max_participants(self, value: int) -> int:
        if value > settings.ROOM_MAX_PARTICIPANTS_LIMIT:
            raise serializers.ValidationError(f"at most {settings.ROOM_MAX_PARTICIPANTS_LIMIT}")
        return value


class MessageSerializer(serializers.ModelSerializer):
    """A stored message; ``from`` is null for server messages, ``to`` null for everyone."""

    sender = serializers.SerializerMethodField(method_name="get_sender")
    to = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = ("id", "sender", "to", "text", "sent_at")
        read_only_fields = fields

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = fields.pop("sender")  # "from" is a Python keyword: renamed here
        fields["to"] = fields.pop("to")
        fields["text"] = fields.pop("text")
        fields["sent_at"] = fields.pop("sent_at")
        return fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_sender(self, message: Message) -> str | None:
        return message.sender_login or None

    @extend_schema_field(serializers.ListField(child=serializers.CharField(), allow_null=True))
    def get_to(self, message: Message) -> list[str] | None:
        return None if message.to_everyone else list(message.recipient_logins)


class MessageCreateSerializer(serializers.Serializer):
    """A server message to the whole room (``to`` omitted or null) or to the listed logins."""

    text = serializers.CharField(trim_whitespace=False)
    to = serializers.ListField(
        child=serializers.CharField(max_length=p.MAX_LOGIN_LENGTH),
        required=False,
        allow_null=True,
        allow_empty=False,
        max_length=1000,
    )

    def validate_text(self, value: str) -> str:
        try:
            services.check_message_text(value)
        except RoomError as exc:
            raise serializers.ValidationError(exc.message) from None
        return value


class MessageFilterSerializer(serializers.Serializer):
    """Query of the message history."""

    login = serializers.CharField(max_length=p.MAX_LOGIN_LENGTH, required=False)


class MuteSerializer(serializers.Serializer):
    """Which tracks to mute (true) or unmute (false); with neither, audio is muted."""

    audio = serializers.BooleanField(required=False, allow_null=True, default=None)
    video = serializers.BooleanField(required=False, allow_null=True, default=None)


class KickSerializer(serializers.Serializer):
    """An optional reason shown to the kicked participant."""

    reason = serializers.CharField(max_length=200, required=False)


class TokenRequestSerializer(serializers.Serializer):
    """Who may join the room, with which role or grants, until when."""

    login = serializers.CharField(max_length=p.MAX_LOGIN_LENGTH)
    role = serializers.ChoiceField(choices=list(ROLE_GRANTS), default=Role.PUBLISHER.value)
    grants = serializers.ListField(child=serializers.ChoiceField(choices=list(GRANTS)), required=False)
    ttl_seconds = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        default=3600,
        help_text="Lifetime in seconds, at most JOIN_TOKEN_MAX_TTL; null for that maximum (every token expires).",
    )
    metadata = serializers.DictField(required=False, help_text="Free JSON kept in the token.")

    def validate_login(self, value: str) -> str:
        return _clean(value, "login", p.MAX_LOGIN_LENGTH)


class TokenSerializer(serializers.Serializer):
    """A minted join token."""

    token = serializers.CharField()
    room = serializers.CharField()
    login = serializers.CharField()
    role = serializers.CharField()
    grants = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField()
    jti = serializers.CharField(help_text="The token's id: DELETE /api/rooms/<room>/tokens/<jti> revokes it.")


class ErrorSerializer(serializers.Serializer):
    """A refused action: a stable code (as in the WebSocket protocol) and a human message."""

    code = serializers.CharField()
    message = serializers.CharField()
