"""A small WebSocket test client over channels' WebsocketCommunicator (bounded waits)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from conference.asgi import application

logger = logging.getLogger(__name__)

HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
WAIT = 10.0


class RoomClient:
    """One test connection: send commands, await replies and events by type."""

    def __init__(self, comm: WebsocketCommunicator) -> None:
        self.comm = comm
        self.rids = itertools.count(1)
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, username: str | None = None, token: str | None = None) -> RoomClient:
        """Connect and say hello; raise AssertionError if the session fails."""
        client = await cls.connect()
        hello: dict[str, Any] = {"type": "hello", "version": 1}
        if token is not None:
            hello["token"] = token
        if username is not None:
            hello["username"] = username
        reply = await client.request(hello)
        assert reply["type"] == "established", reply
        return client

    @classmethod
    async def connect(cls) -> RoomClient:
        """A connected socket without a session."""
        comm = WebsocketCommunicator(application, "/ws/", headers=HEADERS)
        connected, _ = await comm.connect()
        assert connected
        return cls(comm)

    async def send(self, payload: dict[str, Any]) -> None:
        """Send one frame."""
        await self.comm.send_to(text_data=json.dumps(payload))

    async def receive(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame."""
        event = json.loads(await self.comm.receive_from(timeout=timeout))
        self.seen.append(event)
        return event

    async def request(self, payload: dict[str, Any], timeout: float = WAIT) -> dict[str, Any]:
        """Send a command with a fresh rid and return the reply echoing it (events before it are kept)."""
        rid = next(self.rids)
        await self.send({**payload, "rid": rid})
        return await self.until(lambda e: e.get("rid") == rid, timeout)

    async def until(self, match: Any, timeout: float = WAIT) -> dict[str, Any]:
        """The first frame (already seen or new) for which ``match`` (a type or a predicate) holds."""
        check = (lambda e: e.get("type") == match) if isinstance(match, str) else match
        for event in self.seen:
            if check(event):
                self.seen.remove(event)
                return event

        async def wait() -> dict[str, Any]:
            while True:
                event = await self.receive(timeout)
                if check(event):
                    self.seen.remove(event)
                    return event

        return await asyncio.wait_for(wait(), timeout)

    async def join(self, room: str, **extra: Any) -> dict[str, Any]:
        """Join a room and return STATE (or the error)."""
        return await self.request({"type": "join", "room": room, **extra})

    async def close(self) -> None:
        """Disconnect."""
        await self.comm.disconnect()


@database_sync_to_async
def add_live_stream(room: str, login: str, kind: str = "camera") -> str:
    """A PUBLISHING stream row for a present participant (no media needed); its public id."""
    from rooms.models import Participant, Stream

    participant = Participant.objects.get(
        room__name=room, room__finalized_at__isnull=True, login=login, state="connected"
    )
    stream = Stream(participant=participant, kind=kind, status=Stream.Status.PUBLISHING, has_audio=True, has_video=True)
    stream.name = f"{login}-{kind}"
    stream.save()
    return stream.public_id
