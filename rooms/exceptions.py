"""The Room API's one error family; consumers map it to protocol errors in one place."""

from rooms.protocol import ErrorCode, ProtocolError


class RoomError(ProtocolError):
    """A room rule refused an action: a stable code and a human message."""


__all__ = ["ErrorCode", "RoomError"]
