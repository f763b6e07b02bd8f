"""The Room API wire protocol in one place: its vocabulary, commands and events.

docs/protocol.md is the specification; this module mirrors it.  The vocabulary
(command and event types, statuses, states, roles, grants, kinds, moderation
actions, error codes) is one ``StrEnum`` each, which the models, services,
consumers and presenters reuse.  Every command a client may send is a frozen
dataclass built by :func:`parse_command`, which raises :class:`ProtocolError`
with a stable code for any bad input.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
"""The protocol version of ``hello``; written once here (the SDKs each carry a copy, checked by a test)."""


class CommandType(StrEnum):
    """The ``type`` of a command (client -> server)."""

    HELLO = "hello"
    PING = "ping"
    JOIN = "join"
    LEAVE = "leave"
    SEND_MESSAGE = "send_message"
    PUBLISH = "publish"
    UNPUBLISH = "unpublish"
    PLAY = "play"
    STOP = "stop"
    ICE = "ice"
    MUTE = "mute"
    MODERATE = "moderate"
    SET_QUALITY = "set_quality"
    HISTORY = "history"


class EventType(StrEnum):
    """The ``type`` of an event (server -> client)."""

    ESTABLISHED = "established"
    FAILED = "failed"
    PONG = "pong"
    ACK = "ack"
    ERROR = "error"
    STATE = "state"
    JOINED = "joined"
    LEFT = "left"
    PARTICIPANT_UPDATED = "participant_updated"
    PRESENCE = "presence"
    MESSAGE = "message"
    ANSWER = "answer"
    PUBLISHED = "published"
    UNPUBLISHED = "unpublished"
    STREAM_UPDATED = "stream_updated"
    STREAM_STATUS = "stream_status"
    PLAY_STATUS = "play_status"
    ROOM_UPDATED = "room_updated"
    ROOM_CLOSED = "room_closed"
    KICKED = "kicked"
    ACTIVE_SPEAKERS = "active_speakers"
    LAYERS_WANTED = "layers_wanted"
    HISTORY = "history"


class SessionStatus(StrEnum):
    """``status`` of ``established`` and ``failed``; DISCONNECTED is the SDKs' state after the socket closed."""

    ESTABLISHED = "ESTABLISHED"
    FAILED = "FAILED"
    DISCONNECTED = "DISCONNECTED"


class StreamStatus(StrEnum):
    """``status`` of a published stream (``stream_status``, the Stream object)."""

    PENDING = "PENDING"
    PUBLISHING = "PUBLISHING"
    UNPUBLISHED = "UNPUBLISHED"
    FAILED = "FAILED"


class PlayStatus(StrEnum):
    """``status`` of a playback (``play_status``)."""

    PLAYING = "PLAYING"
    STOPPED = "STOPPED"
    UNPUBLISHED = "UNPUBLISHED"
    FAILED = "FAILED"


class Quality(StrEnum):
    """The video quality a player wants (``play``, ``set_quality``); ``play_status.quality``: one of the first three."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    AUTO = "auto"


class ParticipantState(StrEnum):
    """``state`` of a participant."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    LEFT = "left"


LIVE_STREAM_STATUSES = (StreamStatus.PENDING, StreamStatus.PUBLISHING)
"""A live stream: negotiating or publishing."""
PRESENT_STATES = (ParticipantState.CONNECTED, ParticipantState.DISCONNECTED)
"""A present participant: connected, or dropped and not yet expired."""


class Role(StrEnum):
    """A participant's ``role`` (a token's role claim)."""

    MODERATOR = "moderator"
    PUBLISHER = "publisher"
    VIEWER = "viewer"


class Grant(StrEnum):
    """What a role (or a token's explicit grants) allows."""

    CAN_PUBLISH = "can_publish"
    CAN_PLAY = "can_play"
    CAN_CHAT = "can_chat"
    CAN_MODERATE = "can_moderate"
    CAN_RECORD = "can_record"


class StreamKind(StrEnum):
    """``kind`` of a published stream."""

    CAMERA = "camera"
    SCREEN = "screen"


class ModerationAction(StrEnum):
    """``action`` of ``moderate``."""

    KICK = "kick"
    MUTE = "mute"
    UNPUBLISH = "unpublish"
    LOCK = "lock"
    UNLOCK = "unlock"
    FINALIZE = "finalize"
    SET_MAX_PARTICIPANTS = "set_max_participants"


class ErrorCode(StrEnum):
    """Stable error codes; clients switch on these, humans read the text."""

    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNSUPPORTED_VERSION = "unsupported_version"
    INVALID_USERNAME = "invalid_username"
    INVALID_TOKEN = "invalid_token"
    TOKEN_REVOKED = "token_revoked"
    NOT_ESTABLISHED = "not_established"
    ALREADY_ESTABLISHED = "already_established"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    LOGIN_TAKEN = "login_taken"
    ROOM_FULL = "room_full"
    ROOM_LOCKED = "room_locked"
    ROOM_NOT_FOUND = "room_not_found"
    ROOM_EXISTS = "room_exists"
    ROOM_FINISHED = "room_finished"
    MESSAGE_TOO_LARGE = "message_too_large"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    STREAM_NOT_FOUND = "stream_not_found"
    STREAM_NOT_PUBLISHING = "stream_not_publishing"
    ALREADY_PUBLISHING = "already_publishing"
    PLAY_NOT_FOUND = "play_not_found"
    PARTICIPANT_NOT_FOUND = "participant_not_found"
    INVALID_SDP = "invalid_sdp"
    MEDIA_UNAVAILABLE = "media_unavailable"
    MEDIA_FAILED = "media_failed"
    TOO_MANY_PUBLICATIONS = "too_many_publications"
    TOO_MANY_PLAYS = "too_many_plays"
    TOO_MANY_PENDING = "too_many_pending"
    TOO_MANY_CANDIDATES = "too_many_candidates"
    CANDIDATE_REFUSED = "candidate_refused"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"


class ProtocolError(Exception):
    """A refused command: a stable ``code`` and a human ``message``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- Field validation ---------------------------------------------------------

MAX_SDP_BYTES = 64 * 1024
MAX_RID_LENGTH = 64
MAX_NAME_LENGTH = 128
MAX_LOGIN_LENGTH = 64
MAX_RECIPIENTS = 500
MAX_RESUME_SECRET_LENGTH = 128


def _require(payload: dict[str, Any], key: str) -> Any:
    if key not in payload or payload[key] is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, f"'{key}' is required")
    return payload[key]


def _string(payload: dict[str, Any], key: str, *, required: bool = True, max_length: int = 256) -> str | None:
    value = _require(payload, key) if required else payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{key}' must be a string")
    if len(value) > max_length:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{key}' is longer than {max_length} characters")
    return value


def _bool(payload: dict[str, Any], key: str, default: bool | None = False) -> bool | None:
    value = payload.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{key}' must be true or false")
    return value


def _int(payload: dict[str, Any], key: str, *, minimum: int, maximum: int) -> int | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{key}' must be an integer")
    if not minimum <= value <= maximum:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{key}' must be between {minimum} and {maximum}")
    return value


def clean_name(value: str, *, what: str, max_length: int, code: ErrorCode = ErrorCode.INVALID_FIELD) -> str:
    """Normalise a login or room name: NFC, trimmed, printable, bounded."""
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise ProtocolError(code, f"{what} must not be empty")
    if len(name) > max_length:
        raise ProtocolError(code, f"{what} is longer than {max_length} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        raise ProtocolError(code, f"{what} contains control or unassigned characters")
    return name


# --- Commands -------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """Base of every client command."""

    type: ClassVar[str] = ""
    rid: str | int | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> Command:
        return cls(rid=rid)


@dataclass(frozen=True)
class Hello(Command):
    """Open the session with a username or a signed token."""

    type: ClassVar[str] = CommandType.HELLO
    version: int = PROTOCOL_VERSION
    username: str | None = None
    token: str | None = None
    resume_secret: str | None = None
    """The ``resume_secret`` of the client's last STATE: proves it is the participant that dropped."""

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> Hello:
        version = payload.get("version", PROTOCOL_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'version' must be an integer")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION, f"protocol version {version} is not supported (use {PROTOCOL_VERSION})"
            )
        token = _string(payload, "token", required=False, max_length=8192)
        raw = payload.get("username")
        if raw is not None and not isinstance(raw, str):
            raise ProtocolError(ErrorCode.INVALID_USERNAME, "username must be a string")
        username = None
        if raw is not None or token is None:
            username = clean_name(
                raw or "", what="username", max_length=MAX_LOGIN_LENGTH, code=ErrorCode.INVALID_USERNAME
            )
        secret = _string(payload, "resume_secret", required=False, max_length=MAX_RESUME_SECRET_LENGTH)
        return cls(rid=rid, version=version, username=username, token=token, resume_secret=secret or None)


@dataclass(frozen=True)
class Ping(Command):
    """Keep-alive; answered by pong."""

    type: ClassVar[str] = CommandType.PING


@dataclass(frozen=True)
class Join(Command):
    """Join a room by name, creating it if it does not exist."""

    type: ClassVar[str] = CommandType.JOIN
    room: str = ""
    record: bool = False
    max_participants: int | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> Join:
        room = clean_name(_string(payload, "room", max_length=1024) or "", what="room", max_length=MAX_NAME_LENGTH)
        return cls(
            rid=rid,
            room=room,
            record=bool(_bool(payload, "record")),
            max_participants=_int(payload, "max_participants", minimum=1, maximum=100_000),
        )


@dataclass(frozen=True)
class Leave(Command):
    """Leave the current room."""

    type: ClassVar[str] = CommandType.LEAVE


@dataclass(frozen=True)
class SendMessage(Command):
    """Send text to everyone (``to`` absent) or to the listed logins."""

    type: ClassVar[str] = CommandType.SEND_MESSAGE
    text: str = ""
    to: tuple[str, ...] | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> SendMessage:
        text = _require(payload, "text")
        if not isinstance(text, str):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'text' must be a string")
        to = payload.get("to")
        recipients: tuple[str, ...] | None = None
        if to is not None:
            if not isinstance(to, list) or not all(isinstance(x, str) for x in to):
                raise ProtocolError(ErrorCode.INVALID_FIELD, "'to' must be a list of logins")
            if not to:
                raise ProtocolError(ErrorCode.INVALID_FIELD, "'to' must name at least one login (omit it for everyone)")
            if len(to) > MAX_RECIPIENTS:
                raise ProtocolError(ErrorCode.INVALID_FIELD, f"'to' names more than {MAX_RECIPIENTS} logins")
            recipients = tuple(dict.fromkeys(unicodedata.normalize("NFC", x).strip() for x in to))
        return cls(rid=rid, text=text, to=recipients)


def _sdp(payload: dict[str, Any]) -> str:
    sdp = _require(payload, "sdp")
    if not isinstance(sdp, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'sdp' must be a string")
    if len(sdp.encode("utf-8")) > MAX_SDP_BYTES:
        raise ProtocolError(ErrorCode.INVALID_SDP, f"SDP is larger than {MAX_SDP_BYTES} bytes")
    if not sdp.startswith("v=0"):
        raise ProtocolError(ErrorCode.INVALID_SDP, "SDP must start with v=0")
    if "\x00" in sdp:
        raise ProtocolError(ErrorCode.INVALID_SDP, "SDP must not contain NUL characters")
    return sdp


MAX_SDP_LINES = 2000
MAX_SDP_MEDIA_SECTIONS = 32
_SDP_LINE = re.compile(r"[a-z]=[^\x00-\x08\x0a-\x1f\x7f]*")
_SDP_MEDIA = re.compile(r"m=(audio|video|application|text|message) \d+(/\d+)? [A-Za-z0-9/_.-]+( \S+)+")


def validate_sdp(sdp: str) -> str:
    """Check that a client's offer is an SDP document worth handing to the relay, or raise invalid_sdp.

    On top of the parse-time checks (a string, at most MAX_SDP_BYTES, starting with v=0, no NUL): lines of
    the form ``x=value`` without control characters, at most MAX_SDP_LINES of them, and between one and
    MAX_SDP_MEDIA_SECTIONS well-formed ``m=`` lines.  The relay still negotiates (and may refuse) the offer.
    """
    lines = sdp.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) > MAX_SDP_LINES:
        raise ProtocolError(ErrorCode.INVALID_SDP, f"SDP has more than {MAX_SDP_LINES} lines")
    media = 0
    for number, line in enumerate(lines, 1):
        if not _SDP_LINE.fullmatch(line):
            raise ProtocolError(ErrorCode.INVALID_SDP, f"SDP line {number} is not of the form x=value")
        if line.startswith("m="):
            if not _SDP_MEDIA.fullmatch(line):
                raise ProtocolError(ErrorCode.INVALID_SDP, f"SDP line {number} is not a valid m= line")
            media += 1
    if media == 0:
        raise ProtocolError(ErrorCode.INVALID_SDP, "SDP has no m= line (no audio or video to negotiate)")
    if media > MAX_SDP_MEDIA_SECTIONS:
        raise ProtocolError(ErrorCode.INVALID_SDP, f"SDP has more than {MAX_SDP_MEDIA_SECTIONS} m= sections")
    return sdp


@dataclass(frozen=True)
class Publish(Command):
    """Publish a camera or screen stream: an SDP offer answered by the relay."""

    type: ClassVar[str] = CommandType.PUBLISH
    kind: str = StreamKind.CAMERA
    sdp: str = ""
    record: bool = False

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> Publish:
        kind = payload.get("kind", StreamKind.CAMERA)
        if kind not in tuple(StreamKind):  # a tuple: a JSON list or object must compare, not hash
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'kind' must be 'camera' or 'screen'")
        return cls(rid=rid, kind=kind, sdp=_sdp(payload), record=bool(_bool(payload, "record")))


@dataclass(frozen=True)
class Unpublish(Command):
    """Stop publishing one of one's own streams."""

    type: ClassVar[str] = CommandType.UNPUBLISH
    stream: str = ""

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> Unpublish:
        return cls(rid=rid, stream=_string(payload, "stream", max_length=64) or "")


@dataclass(frozen=True)
class Play(Command):
    """Play a PUBLISHING stream of the room: a receive-only SDP offer."""

    type: ClassVar[str] = CommandType.PLAY
    stream: str = ""
    sdp: str = ""
    quality: str = Quality.AUTO

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> Play:
        return cls(
            rid=rid,
            stream=_string(payload, "stream", max_length=64) or "",
            sdp=_sdp(payload),
            quality=_quality(payload, required=False),
        )


def _quality(payload: dict[str, Any], *, required: bool) -> str:
    value = _string(payload, "quality", required=required, max_length=16)
    if value is None:
        return Quality.AUTO
    if value not in tuple(Quality):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'quality' must be one of {', '.join(Quality)}")
    return value


@dataclass(frozen=True)
class SetQuality(Command):
    """Change the video quality wanted by one of one's playbacks."""

    type: ClassVar[str] = CommandType.SET_QUALITY
    play: str = ""
    quality: str = Quality.AUTO

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> SetQuality:
        play = _string(payload, "play", max_length=64) or ""
        return cls(rid=rid, play=play, quality=_quality(payload, required=True))


@dataclass(frozen=True)
class Stop(Command):
    """Stop a playback."""

    type: ClassVar[str] = CommandType.STOP
    play: str = ""

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> Stop:
        return cls(rid=rid, play=_string(payload, "play", max_length=64) or "")


@dataclass(frozen=True)
class Ice(Command):
    """A trickled ICE candidate for a publish (stream id) or a play (play id)."""

    type: ClassVar[str] = CommandType.ICE
    pc: str = ""
    candidate: str | None = None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> Ice:
        pc = _string(payload, "pc", max_length=64) or ""
        candidate = payload.get("candidate")
        if candidate is None:
            return cls(rid=rid, pc=pc)
        if not isinstance(candidate, dict):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'candidate' must be an object or null")
        text = _string(candidate, "candidate", required=False, max_length=1024)
        mid = _string(candidate, "sdpMid", required=False, max_length=32)
        index = _int(candidate, "sdpMLineIndex", minimum=0, maximum=64)
        return cls(rid=rid, pc=pc, candidate=text or None, sdp_mid=mid, sdp_mline_index=index)


@dataclass(frozen=True)
class Mute(Command):
    """Mute or unmute the audio and/or video of one's own stream."""

    type: ClassVar[str] = CommandType.MUTE
    stream: str = ""
    audio: bool | None = None
    video: bool | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> Mute:
        stream = _string(payload, "stream", max_length=64) or ""
        audio = _bool(payload, "audio", None)
        video = _bool(payload, "video", None)
        if audio is None and video is None:
            raise ProtocolError(ErrorCode.MISSING_FIELD, "'audio' or 'video' is required")
        return cls(rid=rid, stream=stream, audio=audio, video=video)


MODERATION_ACTIONS = tuple(ModerationAction)
_STREAM_ACTIONS = (ModerationAction.MUTE, ModerationAction.UNPUBLISH)


@dataclass(frozen=True)
class Moderate(Command):
    """A moderator action on another participant, stream or the room."""

    type: ClassVar[str] = CommandType.MODERATE
    action: str = ""
    login: str | None = None
    stream: str | None = None
    audio: bool | None = None
    video: bool | None = None
    max_participants: int | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> Moderate:
        action = _string(payload, "action", max_length=32)
        if action not in MODERATION_ACTIONS:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"'action' must be one of {', '.join(MODERATION_ACTIONS)}")
        return cls(
            rid=rid,
            action=action,
            login=_string(payload, "login", required=action == ModerationAction.KICK, max_length=MAX_LOGIN_LENGTH),
            stream=_string(payload, "stream", required=action in _STREAM_ACTIONS, max_length=64),
            audio=_bool(payload, "audio", None),
            video=_bool(payload, "video", None),
            max_participants=_int(payload, "max_participants", minimum=1, maximum=100_000),
        )


@dataclass(frozen=True)
class History(Command):
    """A page of older messages: up to ``limit`` before the message ``before`` (absent: the newest)."""

    type: ClassVar[str] = CommandType.HISTORY
    before: int | None = None
    limit: int | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], rid: str | int | None) -> History:
        return cls(
            rid=rid,
            before=_int(payload, "before", minimum=1, maximum=2**53),
            limit=_int(payload, "limit", minimum=1, maximum=2**31),
        )


COMMANDS: dict[str, type[Command]] = {
    cls.type: cls
    for cls in (
        Hello, Ping, Join, Leave, SendMessage, Publish, Unpublish, Play, SetQuality, Stop, Ice, Mute, Moderate, History
    )
}


def decode_frame(text: str | None, bytes_data: bytes | None, max_bytes: int) -> dict[str, Any]:
    """Decode one WebSocket frame into a JSON object, or raise ProtocolError."""
    if text is None:
        raise ProtocolError(ErrorCode.BAD_FRAME, "binary frames are not supported; send JSON text")
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"frame is larger than {max_bytes} bytes")
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_JSON, "frame is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, "frame must be a JSON object")
    return payload


def request_id(payload: dict[str, Any]) -> str | int | None:
    """The request id of a payload, if it is a valid one (else None)."""
    rid = payload.get("rid")
    if isinstance(rid, bool):
        return None
    if isinstance(rid, int) and abs(rid) < 2**53:
        return rid
    if isinstance(rid, str) and len(rid) <= MAX_RID_LENGTH:
        return rid
    return None


def parse_command(payload: dict[str, Any]) -> Command:
    """Build the typed command of a decoded frame, or raise ProtocolError."""
    rid = request_id(payload)
    if "rid" in payload and payload["rid"] is not None and rid is None:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"'rid' must be a string of at most {MAX_RID_LENGTH} or an integer"
        )
    kind = payload.get("type")
    if kind is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "'type' is required")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'type' must be a string")
    cls = COMMANDS.get(kind)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown command type '{kind[:64]}'")
    return cls.from_payload(payload, rid)


# --- Events -------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A server event ready to encode: its type and its fields."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, rid: str | int | None = None) -> dict[str, Any]:
        """The JSON object sent on the wire."""
        data: dict[str, Any] = {"type": self.type, **self.fields}
        if rid is not None:
            data["rid"] = rid
        return data


def error_event(code: str, message: str, rid: str | int | None = None) -> dict[str, Any]:
    """The wire form of an error."""
    return Event(EventType.ERROR, {"code": code, "message": message}).to_dict(rid)


def encode(data: dict[str, Any]) -> str:
    """Encode an event as JSON text (UTF-8 kept as is, never escaped away)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from input: escape it
        text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text
