"""REST views: thin wrappers that validate, call rooms.services / rooms.moderation, and serialize.

Actions on live rooms (kick, mute, unpublish, finalize, messages) go through
the same code as the WebSocket ``moderate`` command, via ``async_to_sync``, so
connected clients hear of them at once.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from rooms import moderation, services
from rooms import protocol as p
from rooms.api.authentication import APIKeyAuthentication
from rooms.api.permissions import IsRoomAPIClient
from rooms.api.serializers import (
    ErrorSerializer,
    MessageCreateSerializer,
    MessageFilterSerializer,
    MessageSerializer,
    MuteSerializer,
    ParticipantSerializer,
    RoomCreateSerializer,
    RoomDetailSerializer,
    RoomSerializer,
    StreamSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)
from rooms.dispatch import deliver
from rooms.exceptions import ErrorCode, RoomError
from rooms.models import Message, Room, Stream
from rooms.protocol import LIVE_STREAM_STATUSES, ModerationAction, ParticipantState, Role, StreamStatus
from rooms.tokens import mint_token, revoke, token_lifetime, verify_token

logger = logging.getLogger(__name__)

STREAM_ID = re.compile(r"^[0-9a-f]{32}$")

_CONFLICT = {
    ErrorCode.ROOM_FULL,
    ErrorCode.ROOM_LOCKED,
    ErrorCode.LOGIN_TAKEN,
    ErrorCode.ALREADY_JOINED,
    ErrorCode.ALREADY_PUBLISHING,
    ErrorCode.ROOM_FINISHED,
    ErrorCode.ROOM_EXISTS,
}


def error_status(code: str) -> int:
    """The HTTP status of a Room API error code."""
    if code.endswith("_not_found"):
        return status.HTTP_404_NOT_FOUND
    if code == ErrorCode.FORBIDDEN:
        return status.HTTP_403_FORBIDDEN
    if code in _CONFLICT:
        return status.HTTP_409_CONFLICT
    return status.HTTP_400_BAD_REQUEST


def _valid_name(value: str, what: str, max_length: int) -> str:
    """A name from the URL, normalised; anything invalid cannot exist: 404."""
    try:
        return p.clean_name(value, what=what, max_length=max_length)
    except p.ProtocolError:
        raise Http404(f"no such {what}") from None


def with_counts(rooms: QuerySet[Room]) -> QuerySet[Room]:
    """Annotate participants_now (present), viewers_now (present viewers: the audience) and streams_now (live)."""
    present = ~Q(participants__state=ParticipantState.LEFT)
    return rooms.annotate(
        participants_now=Count("participants", filter=present, distinct=True),
        viewers_now=Count("participants", filter=present & Q(participants__role=Role.VIEWER), distinct=True),
        streams_now=Count(
            "participants__streams",
            filter=Q(participants__streams__status__in=LIVE_STREAM_STATUSES),
            distinct=True,
        ),
    )


def room_by_name(name: str) -> Room:
    """The active room called ``name``, else the most recent finished one, else 404."""
    name = _valid_name(name, "room", p.MAX_NAME_LENGTH)
    active = with_counts(Room.objects.filter(name=name, finalized_at__isnull=True)).first()
    room = active or with_counts(Room.objects.filter(name=name)).order_by("-created_at").first()
    if room is None:
        raise Http404("no such room")
    return room


def require_active(room: Room) -> None:
    """Refuse actions on a finished room with 409 room_finished."""
    if not room.is_active:
        raise RoomError(ErrorCode.ROOM_FINISHED, f"room '{room.name}' is finished")


ROOM_ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input"),
    404: OpenApiResponse(ErrorSerializer, description="No such room, participant or stream"),
    409: OpenApiResponse(ErrorSerializer, description="The room is finished, or a room rule refused the action"),
}


class RoomAPIMixin:
    """Authentication, permission and error mapping shared by every Room API view."""

    authentication_classes = [APIKeyAuthentication, SessionAuthentication]
    permission_classes = [IsRoomAPIClient]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, RoomError | p.ProtocolError):
            return Response({"code": exc.code, "message": exc.message}, status=error_status(exc.code))
        return super().handle_exception(exc)  # type: ignore[misc]


class RoomViewSet(RoomAPIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, GenericViewSet):
    """Rooms: list (active and finished), retrieve with live participants and streams, create, finalize."""

    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    serializer_class = RoomSerializer

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "create":
            return RoomCreateSerializer
        if self.action in ("retrieve", "finalize"):
            return RoomDetailSerializer
        return RoomSerializer

    def get_queryset(self) -> QuerySet[Room]:
        rooms = with_counts(Room.objects.all()).order_by("-created_at", "-pk")
        params = self.request.query_params
        state = params.get("status")
        if state == "active":
            rooms = rooms.filter(finalized_at__isnull=True)
        elif state == "finished":
            rooms = rooms.filter(finalized_at__isnull=False)
        name = params.get("name")
        if name:
            rooms = rooms.filter(name=name.replace("\x00", ""))
        search = params.get("search")
        if search:
            rooms = rooms.filter(name__icontains=search.replace("\x00", ""))
        for param, lookup in (("created_after", "created_at__gte"), ("created_before", "created_at__lt")):
            if params.get(param):
                rooms = rooms.filter(**{lookup: _parse_time(params[param], param)})
        return rooms

    def get_object(self) -> Room:
        return room_by_name(self.kwargs["name"])

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=["active", "finished"], description="Only active or finished rooms"),
            OpenApiParameter("name", str, description="Exact room name"),
            OpenApiParameter("search", str, description="Part of the room name"),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Rooms, newest first, paginated."""
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: RoomDetailSerializer, 404: ROOM_ERRORS[404]})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A room (the active one of that name, else the latest finished) with its participants and streams."""
        return Response(RoomDetailSerializer(self.get_object()).data)

    @extend_schema(
        request=RoomCreateSerializer,
        responses={201: RoomDetailSerializer, 400: ROOM_ERRORS[400], 409: ROOM_ERRORS[409]},
    )
    def create(self, request: Request) -> Response:
        """Open a room ahead of its participants, with its settings."""
        form = RoomCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        room = services.create_room(
            data["name"], record=data["record"], max_participants=data.get("max_participants"), locked=data["locked"]
        )
        return Response(RoomDetailSerializer(room_by_name(room.name)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: RoomDetailSerializer, 404: ROOM_ERRORS[404], 409: ROOM_ERRORS[409]})
    @action(detail=True, methods=["post"])
    def finalize(self, request: Request, name: str) -> Response:
        """End the room now: everyone is told and leaves."""
        room = self.get_object()
        require_active(room)
        moderation.run(room.pk, ModerationAction.FINALIZE, by="the server")
        return Response(RoomDetailSerializer(room_by_name(room.name)).data)


def _parse_time(value: str, name: str) -> datetime:
    from django.utils.dateparse import parse_datetime

    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise RoomError(ErrorCode.INVALID_FIELD, f"'{name}' must be an ISO 8601 date-time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class RoomChildMixin(RoomAPIMixin):
    """Views nested under /api/rooms/{room_name}/."""

    kwargs: dict[str, Any]

    def room(self) -> Room:
        """The room named in the URL."""
        return room_by_name(self.kwargs["room_name"])


class ParticipantViewSet(RoomChildMixin, GenericViewSet):
    """Participants of a room: list, kick."""

    serializer_class = ParticipantSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "state",
                str,
                enum=["present", *(s.value for s in ParticipantState), "all"],
                description="Which participants (default: present = connected or disconnected)",
            )
        ],
        responses={200: ParticipantSerializer(many=True), 404: ROOM_ERRORS[404]},
    )
    def list(self, request: Request, room_name: str) -> Response:
        """The room's participants, in order of arrival."""
        room = self.room()
        state = request.query_params.get("state", "present")
        people = room.participants.prefetch_related("streams").order_by("joined_at", "pk")
        if state == "present":
            people = people.exclude(state=ParticipantState.LEFT)
        elif state in tuple(ParticipantState):
            people = people.filter(state=state)
        elif state != "all":
            raise RoomError(ErrorCode.INVALID_FIELD, "state must be present, connected, disconnected, left or all")
        page = self.paginate_queryset(people)
        return self.get_paginated_response(ParticipantSerializer(page, many=True).data)

    @extend_schema(request=None, responses={204: None, 404: ROOM_ERRORS[404], 409: ROOM_ERRORS[409]})
    @action(detail=True, methods=["post"])
    def kick(self, request: Request, room_name: str, login: str) -> Response:
        """Remove a present participant: it gets ``kicked``, the room gets ``left``."""
        room = self.room()
        require_active(room)
        login = _valid_name(login, "participant", p.MAX_LOGIN_LENGTH)
        moderation.run(room.pk, ModerationAction.KICK, login=login, by="the server")
        return Response(status=status.HTTP_204_NO_CONTENT)


class StreamViewSet(RoomChildMixin, GenericViewSet):
    """Streams of a room: list, force-mute, force-unpublish."""

    serializer_class = StreamSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                str,
                enum=["live", "all", *(s.value for s in StreamStatus)],
                description="Which streams (default: live = PENDING or PUBLISHING)",
            )
        ],
        responses={200: StreamSerializer(many=True), 404: ROOM_ERRORS[404]},
    )
    def list(self, request: Request, room_name: str) -> Response:
        """The room's streams, oldest first."""
        room = self.room()
        streams = (
            Stream.objects.filter(participant__room=room).select_related("participant").order_by("created_at", "pk")
        )
        wanted = request.query_params.get("status", "live")
        if wanted == "live":
            streams = streams.filter(status__in=LIVE_STREAM_STATUSES)
        elif wanted in tuple(StreamStatus):
            streams = streams.filter(status=wanted)
        elif wanted != "all":
            raise RoomError(ErrorCode.INVALID_FIELD, "status must be live, all or a stream status")
        page = self.paginate_queryset(streams)
        return self.get_paginated_response(StreamSerializer(page, many=True).data)

    def _live_stream(self, room: Room, stream_id: str) -> str:
        require_active(room)
        if not STREAM_ID.match(stream_id):
            raise Http404("no such stream")
        return stream_id

    @extend_schema(
        request=MuteSerializer, responses={200: StreamSerializer, 404: ROOM_ERRORS[404], 409: ROOM_ERRORS[409]}
    )
    @action(detail=True, methods=["post"])
    def mute(self, request: Request, room_name: str, stream_id: str) -> Response:
        """Force-mute (or unmute) a stream's audio and/or video; everyone gets ``stream_updated``."""
        room = self.room()
        stream_id = self._live_stream(room, stream_id)
        form = MuteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        audio, video = form.validated_data.get("audio"), form.validated_data.get("video")
        moderation.run(room.pk, ModerationAction.MUTE, stream=stream_id, audio=audio, video=video, by="the server")
        stream = Stream.objects.select_related("participant").get(public_id=stream_id)
        return Response(StreamSerializer(stream).data)

    @extend_schema(request=None, responses={200: StreamSerializer, 404: ROOM_ERRORS[404], 409: ROOM_ERRORS[409]})
    @action(detail=True, methods=["post"])
    def unpublish(self, request: Request, room_name: str, stream_id: str) -> Response:
        """Force-unpublish a stream: its publisher gets ``stream_status`` UNPUBLISHED, the room ``unpublished``."""
        room = self.room()
        stream_id = self._live_stream(room, stream_id)
        moderation.run(room.pk, ModerationAction.UNPUBLISH, stream=stream_id, by="the server")
        stream = Stream.objects.select_related("participant").get(public_id=stream_id)
        return Response(StreamSerializer(stream).data)


class MessageViewSet(RoomChildMixin, GenericViewSet):
    """Messages of a room: history and server messages."""

    serializer_class = MessageSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "login",
                str,
                description="Only what this login may see (messages to everyone, from it, or to it). "
                "Without it the server-side reader sees every message, private ones included.",
            )
        ],
        responses={200: MessageSerializer(many=True), 404: ROOM_ERRORS[404]},
    )
    def list(self, request: Request, room_name: str) -> Response:
        """The room's messages, oldest first, paginated."""
        room = self.room()
        query = MessageFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        messages = Message.objects.filter(room=room)
        login = query.validated_data.get("login")
        if login:
            visible = Q(to_everyone=True) | Q(sender_login=login) | Q(recipients__login=login)
            ids = Message.objects.filter(room=room).filter(visible).values("pk")
            messages = messages.filter(pk__in=ids)
        page = self.paginate_queryset(messages.order_by("sent_at", "pk"))
        return self.get_paginated_response(MessageSerializer(page, many=True).data)

    @extend_schema(
        request=MessageCreateSerializer,
        responses={201: MessageSerializer, 400: ROOM_ERRORS[400], 404: ROOM_ERRORS[404], 409: ROOM_ERRORS[409]},
    )
    def create(self, request: Request, room_name: str) -> Response:
        """Send a server message (``from`` null) to everyone or to the listed logins."""
        room = self.room()
        require_active(room)
        form = MessageCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        to = form.validated_data.get("to")
        data, outcome = services.send_server_message(room.pk, form.validated_data["text"], tuple(to) if to else None)
        async_to_sync(deliver)(outcome.deliveries)
        message = Message.objects.get(pk=data["id"])
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class TokenView(RoomAPIMixin, APIView):
    """Mint join tokens for a room (which need not exist yet)."""

    @extend_schema(request=TokenRequestSerializer, responses={201: TokenSerializer, 400: ROOM_ERRORS[400]})
    def post(self, request: Request, room_name: str) -> Response:
        """A signed join token (JWT HS256) for ``login`` in this room, with a role or explicit grants."""
        try:
            room = p.clean_name(room_name, what="room", max_length=p.MAX_NAME_LENGTH)
        except p.ProtocolError as exc:
            raise RoomError(ErrorCode.INVALID_FIELD, exc.message) from None
        form = TokenRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        ttl = token_lifetime(data.get("ttl_seconds"))
        grants = data.get("grants")
        token = mint_token(
            room, data["login"], role=data["role"], grants=grants, ttl_seconds=ttl, metadata=data.get("metadata")
        )
        claims = verify_token(token)
        from rooms.permissions import grants_for_role

        body = {
            "token": token,
            "room": room,
            "login": data["login"],
            "role": data["role"],
            "grants": sorted(set(grants)) if grants is not None else sorted(grants_for_role(data["role"])),
            "expires_at": claims.expires_at,
            "jti": claims.jti,
        }
        return Response(TokenSerializer(body).data, status=status.HTTP_201_CREATED)


class TokenRevocationView(RoomAPIMixin, APIView):
    """Revoke one join token of a room before it expires."""

    @extend_schema(responses={204: None, 400: ROOM_ERRORS[400]})
    def delete(self, request: Request, room_name: str, jti: str) -> Response:
        """Revoke the token whose ``jti`` this is: a later hello with it fails with ``token_revoked``
        (connections already established with it stay; kick them to remove them). Idempotent."""
        revoke(jti, room=room_name, reason=f"REST ({getattr(request.auth, 'name', 'api key')})")
        return Response(status=status.HTTP_204_NO_CONTENT)
