"""A crowd of Python SDK participants in one thread: each publishes a small counter video and a tone or silence.

Cheaper than browser pages for filling a room: 160x120 video, one event loop for all of them.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiortc.mediastreams import AudioStreamTrack

import roomapi
from roomapi import STREAM_STATUS
from tests.media_sources import CounterVideoTrack, ToneAudioTrack

WAIT = 30.0


class BotCrowd(threading.Thread):
    """``logins`` join ``room`` (the first creates it with ``max_participants``) and publish until released.

    Logins in ``speakers`` send a loud tone, the others silence; with ``publish=False`` nobody publishes.
    The first login then sends ``messages`` chat messages "message 1", "message 2", ... before ``ready``.
    """

    def __init__(self, ws_url: str, room: str, logins: list[str], *, speakers: tuple[str, ...] = (),
                 max_participants: int = 10, size: tuple[int, int] = (160, 120), publish: bool = True,
                 messages: int = 0) -> None:
        super().__init__(daemon=True)
        self.ws_url, self.room_name, self.logins = ws_url, room, logins
        self.speakers, self.max_participants, self.size = speakers, max_participants, size
        self.publish, self.messages = publish, messages
        self.ready = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.streams: dict[str, Any] = {}

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
        finally:
            self.ready.set()

    async def _one(self, login: str, index: int) -> Any:
        connection = await roomapi.connect(self.ws_url, login)
        room = await connection.join(self.room_name, max_participants=self.max_participants)
        if index == 0:
            await self._write(room)
        if not self.publish:
            return connection
        color = ((index * 53) % 256, (index * 97 + 80) % 256, (index * 31 + 160) % 256)
        audio = ToneAudioTrack(amplitude=0.5) if login in self.speakers else AudioStreamTrack()
        stream = await room.publish(video=CounterVideoTrack(color, *self.size), audio=audio)
        await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
        self.streams[login] = stream
        return connection

    async def _write(self, room: Any) -> None:
        """Send ``messages`` numbered messages, within the server's message rate (10 a second by default)."""
        for n in range(1, self.messages + 1):
            await room.send_message(f"message {n}")
            await asyncio.sleep(0.12)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        connections = []
        try:
            # The first creates the room with its limit; the others join it together.
            connections.append(await self._one(self.logins[0], 0))
            connections += await asyncio.gather(*(self._one(login, i + 1) for i, login in enumerate(self.logins[1:])))
            self.ready.set()
            await asyncio.to_thread(self.release.wait, 300)
        finally:
            await asyncio.gather(*(c.disconnect() for c in connections), return_exceptions=True)

    def set_audio_muted(self, login: str, muted: bool) -> None:
        """Mute or unmute ``login``'s microphone (from the test's thread; bounded)."""
        assert self.loop is not None
        stream = self.streams[login]
        action = stream.mute_audio() if muted else stream.unmute_audio()
        asyncio.run_coroutine_threadsafe(action, self.loop).result(WAIT)

    def stop(self) -> None:
        """Let the bots leave and wait (bounded) for the thread."""
        self.release.set()
        self.join(30)
