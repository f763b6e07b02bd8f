"""A Chromium page whose WebSocket's TCP connection is cut for ~3 s resumes by itself (issue 11, finding 1).

The page's WebSocket goes through a small TCP proxy that the test controls: the
proxy aborts the connection (no close frame either way) and refuses new ones for
3 s.  The Web SDK goes RECONNECTING, tries again with backoff, resumes the room
with its secret, publishes its camera again and plays bob again; bob's page plays
alice's new stream, frames rise on both sides, and bob never sees alice leave.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import WAIT_MS, RoomPage, _flush_database, _forget_dead_media_workers
from tests.servers import DaphneServer, free_port

pytestmark = pytest.mark.django_db

CUT_SECONDS = 3.0


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 (its own thread and event loop) whose connections the test can cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.refusing = False
        self.accepted = 0
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        """Listen (bounded wait)."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    def cut(self) -> None:
        """Abort every proxied connection (RST both ways, no close frame) and refuse new ones."""
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(timeout=10)

    def restore(self) -> None:
        """Accept and forward new connections again."""
        self.refusing = False

    def close(self) -> None:
        """Stop listening, drop everything, end the thread (bounded)."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _shutdown(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        self.refusing = True
        for client, upstream in list(self._pairs):
            client.transport.abort()
            upstream.transport.abort()
        self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), timeout=5
            )
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)
        self._pairs.discard(pair)
        for w in pair:
            w.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[DaphneServer]:
    """This module's own daphne: dropped participants wait 30 s, far longer than the cut."""
    _forget_dead_media_workers()
    with django_db_blocker.unblock():
        srv = DaphneServer({"ROOM_IDLE_TIMEOUT": "30", "LOG_LEVEL": "WARNING"})
        srv.start()
    try:
        yield srv
    finally:
        srv.close()
        from concurrent.futures import ThreadPoolExecutor

        with django_db_blocker.unblock(), ThreadPoolExecutor(1) as pool:
            pool.submit(_flush_database).result(timeout=60)


@pytest.fixture
def proxy(server: DaphneServer) -> Iterator[CuttableProxy]:
    """A proxy in front of the server's port."""
    instance = CuttableProxy(int(server.http_url.rsplit(":", 1)[1]))
    instance.start()
    try:
        yield instance
    finally:
        instance.close()


WATCH_SESSION = """() => {
    const video = document.querySelector("#localDisplay video");
    const connection = video && video.roomapiStream && video.roomapiStream._room._connection;
    if (!connection) return false;
    window.sessionLog = [];
    for (const status of ["RECONNECTING", "ESTABLISHED", "DISCONNECTED"]) {
        connection.on(status, () => window.sessionLog.push(status));
    }
    for (const event of ["RECONNECTING", "RECONNECTED"]) {
        connection.getRoom().on(event, () => window.sessionLog.push("room:" + event));
    }
    return true;
}"""


def frames_rise(page: RoomPage, display: str, timeout_s: float = 30.0) -> None:
    """The video in ``display`` decodes more frames than a moment ago (bounded)."""
    page.wait_video(display, timeout_s)


def test_a_page_resumes_with_media_after_its_websocket_is_cut(
    open_page: Callable[..., RoomPage], proxy: CuttableProxy, server: DaphneServer
) -> None:
    """Cut alice's WebSocket for 3 s: her page shows the reconnect banner, resumes without a click (the banner
    goes), publishes and plays again, bob plays her new stream, frames rise on both pages, and bob's log says
    disconnected/reconnected, never left."""
    alice = open_page("/conference/?roomName=cut-page")
    bob = open_page("/conference/?roomName=cut-page")
    alice.el("url").fill(f"ws://127.0.0.1:{proxy.port}")
    alice.join("alice")
    bob.join("bob")
    expect(alice.el("participant1Status")).to_have_text("PLAYING", timeout=20_000)
    expect(bob.el("participant1Status")).to_have_text("PLAYING", timeout=20_000)
    frames_rise(alice, "participant1Display")
    frames_rise(bob, "participant1Display")
    assert alice.page.evaluate(WATCH_SESSION)
    assert proxy.accepted == 1

    proxy.cut()
    time.sleep(CUT_SECONDS)
    assert alice.page.evaluate("window.sessionLog") == ["RECONNECTING", "room:RECONNECTING"]
    expect(alice.el("reconnectBanner")).to_be_visible()
    expect(alice.el("reconnectBanner")).to_have_text("Connection lost: reconnecting…")
    expect(alice.el("status")).to_have_text("RECONNECTING")
    alice.screenshot("conference-reconnecting-desktop")
    proxy.restore()

    alice.page.wait_for_function("window.sessionLog.includes('room:RECONNECTED')", timeout=30_000)
    expect(alice.el("reconnectBanner")).to_be_hidden()
    expect(alice.el("status")).to_have_text("ESTABLISHED")
    # ESTABLISHED is not emitted again (the page joins on it), DISCONNECTED never came
    assert alice.page.evaluate("window.sessionLog") == ["RECONNECTING", "room:RECONNECTING", "room:RECONNECTED"]
    expect(alice.el("localStatus")).to_have_text("PUBLISHING", timeout=20_000)
    expect(alice.el("participant1Status")).to_have_text("PLAYING", timeout=20_000)
    frames_rise(alice, "participant1Display")
    expect(bob.el("participant1Status")).to_have_text("PLAYING", timeout=20_000)
    frames_rise(bob, "participant1Display")
    expect(bob.chat_line("alice", "disconnected")).to_have_count(1, timeout=WAIT_MS)
    expect(bob.chat_line("alice", "reconnected")).to_have_count(1, timeout=WAIT_MS)
    assert bob.chat_line("alice", "left").count() == 0 and bob.chat_line("alice", "joined").count() == 0
    assert bob.el("participant1Name").inner_text() == "alice"
    assert proxy.accepted >= 2
    alice.leave()
    bob.leave()
