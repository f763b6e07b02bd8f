"""Python asyncio client SDK of the Room API (docs/protocol.md), named after the reference's Room API.

Its names (SESSION_STATUS, ROOM_EVENT, STREAM_STATUS, QUALITY, ERROR_CODE, PROTOCOL_VERSION) are the Web SDK's.

    conn = await roomapi.connect("ws://127.0.0.1:8000", "alice")
    room = await conn.join("demo")
    room.on(ROOM_EVENT.JOINED, lambda event: ...)
    await room.send_message("hello")
    await room.leave()
    await conn.disconnect()
"""

from roomapi.client import Connection, connect
from roomapi.constants import ERROR_CODE, PROTOCOL_VERSION, QUALITY, ROOM_EVENT, SESSION_STATUS, STREAM_STATUS
from roomapi.errors import RoomApiError
from roomapi.objects import Message, Participant, RoomEvent, Stream
from roomapi.room import Room

__all__ = [
    "ERROR_CODE",
    "PROTOCOL_VERSION",
    "QUALITY",
    "ROOM_EVENT",
    "SESSION_STATUS",
    "STREAM_STATUS",
    "Connection",
    "Message",
    "Participant",
    "Room",
    "RoomApiError",
    "RoomEvent",
    "Stream",
    "connect",
]
