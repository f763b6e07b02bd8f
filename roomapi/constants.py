"""Names of the Room API SDK: statuses, room events and error codes (docs/protocol.md, "SDK names").

The Web SDK (rooms/static/rooms/roomapi.js) exports the same names with the same
values; tests/test_sdk_vocabulary.py compares both with rooms/protocol.py.
Status and event values equal their names; error codes are the protocol's
lower-case codes.
"""

from __future__ import annotations

PROTOCOL_VERSION = 1
"""Protocol version spoken by this SDK (the ``version`` of hello)."""


class SESSION_STATUS:
    """States of a connection (the reference's SESSION_STATUS).

    NEW (not yet connected) and PENDING (hello sent) are the SDK's own; ESTABLISHED and FAILED are the
    server's answer to hello; RECONNECTING: the socket dropped while in a room and the SDK is resuming
    (ESTABLISHED again when resumed, not emitted twice); DISCONNECTED follows the socket's final close.
    """

    NEW = "NEW"
    PENDING = "PENDING"
    ESTABLISHED = "ESTABLISHED"
    RECONNECTING = "RECONNECTING"
    FAILED = "FAILED"
    DISCONNECTED = "DISCONNECTED"


class ROOM_EVENT:
    """Events a joined room emits to the callbacks given to ``room.on`` (and to ``room.wait_for``).

    STATE: the join succeeded (the room and the others).  JOINED, LEFT, PARTICIPANT_UPDATED: another
    participant joined, left, or dropped / resumed (one each, also when a big room batches them).  PRESENCE: a
    batched ``presence`` event was applied (after its JOINED/LEFT/PARTICIPANT_UPDATED); ``event.viewers`` and
    ``room.viewers`` give the audience count.  PUBLISHED, UNPUBLISHED, STREAM_UPDATED: a stream
    started, ended, or changed its mute flags.  ROOM_UPDATED: a moderator locked, unlocked or resized the
    room.  MESSAGE: a message to everyone or to you.  ACTIVE_SPEAKERS: the streams whose audio is speaking
    changed (``event.speakers``, loudest first; also ``room.active_speakers``, which the join's state fills).
    CLOSED: the room was finalized (code ``room_closed``).  KICKED: a moderator removed you.  FAILED: one of your
    streams failed (code ``stream_failed``); the Web SDK also emits it for a refused join, which this SDK raises
    instead.  RECONNECTING: the connection dropped and the SDK is resuming the room; RECONNECTED: resumed (the room
    took the new state; published and played streams are being re-established).
    """

    STATE = "STATE"
    JOINED = "JOINED"
    LEFT = "LEFT"
    PARTICIPANT_UPDATED = "PARTICIPANT_UPDATED"
    PRESENCE = "PRESENCE"
    PUBLISHED = "PUBLISHED"
    UNPUBLISHED = "UNPUBLISHED"
    STREAM_UPDATED = "STREAM_UPDATED"
    ROOM_UPDATED = "ROOM_UPDATED"
    MESSAGE = "MESSAGE"
    ACTIVE_SPEAKERS = "ACTIVE_SPEAKERS"
    CLOSED = "CLOSED"
    KICKED = "KICKED"
    FAILED = "FAILED"
    RECONNECTING = "RECONNECTING"
    RECONNECTED = "RECONNECTED"


class STREAM_STATUS:
    """States of a published stream (NEW, PENDING, PUBLISHING, UNPUBLISHED, FAILED) and of a playback
    (NEW, PENDING, PLAYING, STOPPED, UNPUBLISHED, FAILED).  NEW: not yet offered to the server."""

    NEW = "NEW"
    PENDING = "PENDING"
    PUBLISHING = "PUBLISHING"
    UNPUBLISHED = "UNPUBLISHED"
    PLAYING = "PLAYING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


class QUALITY:
    """The video quality a player wants from a simulcast stream (``play(quality=...)``, ``set_quality``).

    LOW, MEDIUM, HIGH: at most that layer; AUTO: whatever the player's link carries.  ``PlayingStream.quality``
    is the layer being forwarded (one of the first three).
    """

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    AUTO = "auto"


class ERROR_CODE:
    """``RoomApiError.code`` values: the server's stable error codes, then the SDK's own (last four)."""

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
    # The SDK's own: the socket closed, a reply did not come, the socket could not open, a bad server URL,
    # a relay-only peer connection that got no relay candidate (TURN refused the credential or is unreachable).
    DISCONNECTED = "disconnected"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    BAD_URL = "bad_url"
    ICE_FAILED = "ice_failed"


ALL_ROOM_EVENTS = frozenset(
    value for key, value in vars(ROOM_EVENT).items() if not key.startswith("_") and isinstance(value, str)
)
