"""Python asyncio client SDK of the Room API (docs/protocol.md), named after the reference's Room API.

    conn = await roomapi.connect("ws://127.0.0.1:8000", "alice")
    room = await conn.join("demo")
    room.on(ROOM_EVENT.JOINED, lambda event: ...)
    await room.send_message("hello")
    await room.leave()
    await conn.disconnect()
"""

from roomapi.client import Connection, connect
from roomapi.constants import ROOM_EVENT, SESSION_STATUS, STREAM_STATUS
from roomapi.errors import RoomApiError
from roomapi.objects import Message, Participant, RoomEvent, Stream
from roomapi.room import Room

__all__ = [
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
