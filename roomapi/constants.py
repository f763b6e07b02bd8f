"""Status and event names of the Room API; each constant's value is its name."""

from __future__ import annotations


class SESSION_STATUS:
    """States of a connection (the reference's SESSION_STATUS)."""

    PENDING = "PENDING"
    ESTABLISHED = "ESTABLISHED"
    FAILED = "FAILED"
    DISCONNECTED = "DISCONNECTED"


class ROOM_EVENT:
    """Events a :class:`roomapi.Room` emits to the callbacks given to ``room.on``."""

    STATE = "STATE"
    JOINED = "JOINED"
    LEFT = "LEFT"
    PUBLISHED = "PUBLISHED"
    UNPUBLISHED = "UNPUBLISHED"
    UPDATED = "UPDATED"
    MESSAGE = "MESSAGE"
    FAILED = "FAILED"


class STREAM_STATUS:
    """States of a published stream (PENDING..FAILED) and of a playback (PLAYING, STOPPED)."""

    PENDING = "PENDING"
    PUBLISHING = "PUBLISHING"
    UNPUBLISHED = "UNPUBLISHED"
    FAILED = "FAILED"
    PLAYING = "PLAYING"
    STOPPED = "STOPPED"


ALL_ROOM_EVENTS = frozenset(
    value for key, value in vars(ROOM_EVENT).items() if not key.startswith("_") and isinstance(value, str)
)
