"""End-to-end fixtures: a real daphne server and Debian's Chromium driven by Playwright.

Chromium runs headless with fake camera, microphone and screen so that pages
publish real WebRTC media without a device.  Every wait is bounded.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.servers import DaphneServer

logger = logging.getLogger(__name__)

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream=device-count=3",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # Screen sharing: pick the (fake) entire screen without a picker.
    "--auto-select-desktop-capture-source=Entire screen",
    "--enable-usermedia-screen-capturing",
    "--allow-http-screen-capture",
    # Three pages in one browser must not throttle each other's media.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
AXE_VERSION = "4.10.3"
AXE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rooms-tests" / f"axe-{AXE_VERSION}.min.js"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
WAIT_MS = 15_000
MEDIA_WAIT_MS = 20_000
PUBLISH_WAIT_MS = 45_000
"""A page's own camera: three simulcast encodings to start on a machine that may be busy."""
PAGE_LOAD_MS = 45_000


@pytest.fixture
def _django_db_helper(django_db_setup: Any) -> Iterator[None]:
    """Replace pytest-django's per-test transaction for browser tests.

    The ``django_db`` mark on these modules only makes pytest-django create the
    test database; the tests never touch it in this process.  Wrapping each test
    in a transaction here would hold an SQLite lock that blocks the server's writes.
    """
    yield


def _forget_dead_media_workers() -> None:
    """Drop media workers that stopped heartbeating (and their room pins) from the Redis registry.

    Daphne processes of earlier runs leave their in-process worker behind; a test
    database recreated since then reuses room ids, and the relay's reaper would
    fail the new rooms' streams in the name of the dead worker.
    """
    url = os.environ.get("REDIS_URL")
    if not url:
        return
    import json

    import redis

    from media_relay.registry import DEAD_AFTER_SECONDS, RedisRegistry

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        cutoff = time.time() - DEAD_AFTER_SECONDS
        workers = client.hgetall(RedisRegistry.WORKERS)
        dead = {w for w, raw in workers.items() if json.loads(raw).get("seen", 0) < cutoff}
        for worker_id in dead:
            client.hdel(RedisRegistry.WORKERS, worker_id)
        for key in client.scan_iter(match=RedisRegistry.ROOM.format("*"), count=500):
            if client.get(key) not in workers or client.get(key) in dead:
                client.delete(key)
    finally:
        client.close()


def _flush_database() -> None:
    from django.core.management import call_command
    from django.db import connections

    try:
        # Keep the id sequences going, as TransactionTestCase does: media-relay pins are keyed by room id.
        call_command("flush", interactive=False, verbosity=0, reset_sequences=False)
    finally:
        connections.close_all()


@pytest.fixture(scope="package")
def server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[DaphneServer]:
    """One daphne process for all browser tests (one server, so one media worker), flushed afterwards.

    Test modules using it carry ``pytest.mark.django_db`` so that pytest-django
    creates the test database; the server's rows are removed by a flush at the end.
    """
    _forget_dead_media_workers()
    with django_db_blocker.unblock():
        srv = DaphneServer({"ROOM_IDLE_TIMEOUT": "3", "LOG_LEVEL": "WARNING"})
        srv.start()
    try:
        yield srv
    finally:
        srv.close()
        # In a thread: Playwright's sync API keeps an event loop registered in this
        # one, which Django's async-safety guard would (wrongly) object to.
        with django_db_blocker.unblock(), ThreadPoolExecutor(1) as pool:
            pool.submit(_flush_database).result(timeout=60)


@pytest.fixture(scope="module")
def playwright_driver(server: DaphneServer) -> Iterator[Playwright]:
    """The Playwright driver (never downloads a browser: Debian's Chromium is used).

    Per module, and after the server (hence the test database) exists: while the sync
    API runs, an event loop is registered in this thread and Django refuses sync DB work.
    """
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is required under CI ({CHROMIUM}); run scripts/system-deps.sh")
        pytest.skip(f"needs Chromium at {CHROMIUM} (scripts/system-deps.sh installs it)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """A headless Chromium with fake media devices."""
    instance = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
    try:
        yield instance
    finally:
        instance.close()


def _fetch_axe() -> str:
    """axe-core's axe.min.js from the npm registry (``npm pack``), cached outside the repository."""
    if AXE_CACHE.exists():
        return AXE_CACHE.read_text(encoding="utf-8")
    npm = shutil.which("npm")
    if not npm:
        raise FileNotFoundError("npm is needed to fetch axe-core")
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", folder],
            check=True, capture_output=True, timeout=180,
        )
        with tarfile.open(next(Path(folder).glob("axe-core-*.tgz"))) as archive:
            member = archive.extractfile("package/axe.min.js")
            assert member is not None
            source = member.read().decode("utf-8")
    AXE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    AXE_CACHE.write_text(source, encoding="utf-8")
    return source


@pytest.fixture(scope="session")
def axe_source() -> str:
    """The axe-core script (fetched once with npm, then cached)."""
    try:
        return _fetch_axe()
    except (OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"axe-core {AXE_VERSION} could not be fetched with npm: {exc}")
        pytest.skip(f"axe-core could not be fetched with npm: {exc}")


PUBLISH_STATE_JS = """() => {
  const p = window.conferencePage || window.videoChatPage || window.screenSharingPage;
  const s = p && p.localStream;
  if (!s) return null;
  const pc = s._negotiation && s._negotiation.pc;
  const state = {status: s.status(), id: s.id()};
  if (pc) Object.assign(state, {signaling: pc.signalingState, ice: pc.iceConnectionState,
    connection: pc.connectionState, answered: Boolean(pc.remoteDescription)});
  return state;
}"""
"""A page's own stream as the SDK sees it, with its peer connection's states (for a publish that fails)."""


class RoomPage:
    """One browser tab on a conference page, with helpers named after what a user does."""

    def __init__(self, page: Page, context: BrowserContext) -> None:
        self.page = page
        self.context = context
        self.console: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    def close(self) -> None:
        """Close the tab and its context (a page no test needs any more costs CPU: its camera preview runs)."""
        self.context.close()

    def el(self, element_id: str) -> Any:
        """The locator of an element by id."""
        return self.page.locator(f"#{element_id}")

    def invite(self) -> str:
        """The invite link shown on the page."""
        return str(self.el("inviteAddr").get_attribute("href"))

    def join(self, login: str, *, publish: bool = True) -> None:
        """Type a login, press Join, wait for ESTABLISHED (and PUBLISHING)."""
        self.el("login").fill(login)
        self.el("joinBtn").click()
        expect(self.el("status")).to_have_text("ESTABLISHED", timeout=WAIT_MS)
        if publish:
            try:
                expect(self.el("localStatus")).to_have_text("PUBLISHING", timeout=PUBLISH_WAIT_MS)
            except AssertionError as exc:
                info = self.el("failedInfo").inner_text()
                stream = self.page.evaluate(PUBLISH_STATE_JS)
                raise AssertionError(
                    f"{exc}\nfailedInfo: {info!r}; the SDK's stream: {stream}; console: {self.console[-10:]}"
                ) from None

    def leave(self) -> None:
        """Press Leave and wait until the page is out of the room."""
        expect(self.el("joinBtn")).to_have_text("Leave", timeout=WAIT_MS)
        self.el("joinBtn").click()
        expect(self.el("joinBtn")).to_have_text("Join", timeout=WAIT_MS)

    def send(self, text: str, to: str = "") -> None:
        """Send a chat message (to everyone, or privately to ``to``)."""
        self.el("recipient").select_option(value=to)
        self.el("message").fill(text)
        self.el("sendBtn").click()
        try:
            expect(self.chat_line(self.el("login").input_value(), text)).to_have_count(1, timeout=WAIT_MS)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nchat log:\n{self.chat_text()}\nconsole: {self.console[-10:]}") from None

    def chat_line(self, name: str, text: str) -> Any:
        """Locator of the chat lines "HH:MM name - text"."""
        pattern = re.compile(r"^\d\d:\d\d " + re.escape(name) + " - " + re.escape(text) + "$")
        return self.page.locator("#chat .chat-line").filter(has_text=pattern)

    def chat_text(self) -> str:
        """The whole chat log as text."""
        return str(self.el("chat").inner_text())

    def video_state(self, display_id: str) -> dict[str, Any] | None:
        """Size and decoded frame count of the video the SDK plays in ``display_id`` (None if none)."""
        return self.page.evaluate(  # type: ignore[no-any-return]
            """async (id) => {
                const video = document.querySelector(`#${id} video`);
                if (!video || !video.roomapiStream) return null;
                const report = await video.roomapiStream.getStats();
                let frames = 0;
                if (report) report.forEach((s) => {
                    if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
                });
                return {width: video.videoWidth, height: video.videoHeight, frames};
            }""",
            display_id,
        )

    def wait_video(self, display_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Wait (bounded) until the video in ``display_id`` has a size and its decoded frame count rises."""
        deadline = time.monotonic() + timeout_s
        first: int | None = None
        state: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            state = self.video_state(display_id)
            if state and state["width"] > 0:
                if first is None:
                    first = state["frames"]
                elif state["frames"] > first:
                    return state
            self.page.wait_for_timeout(200)
        raise AssertionError(
            f"no live video in #{display_id} within {timeout_s} s (last: {state}); console: {self.console[-10:]}"
        )

    def axe_violations(self, axe_source: str, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
        """Run axe-core on the page (WCAG 2 A/AA rules); the violations of ``impacts``, one line each."""
        if not self.page.evaluate("typeof window.axe !== 'undefined'"):
            self.page.add_script_tag(content=axe_source)
        result = self.page.evaluate(
            """async () => {
                const tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
                const r = await axe.run(document, {runOnly: {type: "tag", values: tags}});
                return {passes: r.passes.length, violations: r.violations.map((v) => ({id: v.id, impact: v.impact,
                    help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" "))}))};
            }"""
        )
        assert result["passes"] > 10, f"axe checked almost nothing: {result}"
        return [
            f"{v['impact']} {v['id']}: {v['help']} at {v['nodes']}"
            for v in result["violations"]
            if v["impact"] in impacts
        ]

    def screenshot(self, name: str) -> Path:
        """Save a screenshot to artifacts/."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar then sits on top of the full-page image
        self.page.screenshot(path=str(path), full_page=True, timeout=60_000)
        return path


@pytest.fixture(scope="module")
def open_page(browser: Browser, server: DaphneServer) -> Iterator[Callable[..., RoomPage]]:
    """Open a page of the server in its own browser context; all are closed at the end of the module."""
    contexts: list[BrowserContext] = []
    pages: list[RoomPage] = []

    def opener(path: str, *, viewport: dict[str, int] | None = None, mobile: bool = False) -> RoomPage:
        options: dict[str, Any] = {"viewport": viewport or {"width": 1360, "height": 900}}
        if mobile:
            options.update({"is_mobile": True, "has_touch": True, "device_scale_factor": 2})
        context = browser.new_context(**options)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        url = path if path.startswith("http") else server.http_url + path
        # A page loads a dozen small modules from daphne, which also relays every call's media: allow for it.
        page.goto(url, timeout=PAGE_LOAD_MS)
        room_page = RoomPage(page, context)
        pages.append(room_page)
        return room_page

    yield opener
    for room_page in pages:
        if room_page.console:
            logger.warning("console of %s:\n%s", room_page.page.url, "\n".join(room_page.console[-50:]))
    for context in contexts:
        try:
            context.close()
        except Exception:  # the browser may be gone already, or the test closed it
            logger.debug("closing a browser context failed", exc_info=True)


def video_chat_pair(open_page: Callable[..., RoomPage]) -> tuple[RoomPage, RoomPage]:
    """Two pages on /video-chat/ through one invite link, joined, each playing the other's video."""
    ann = open_page("/video-chat/")
    ben = open_page(ann.invite())
    ann.join("ann")
    ben.join("ben")
    for page, other in ((ann, "ben"), (ben, "ann")):
        expect(page.el("remoteName")).to_have_text(other, timeout=WAIT_MS)
        expect(page.el("remoteStatus")).to_have_text("PLAYING", timeout=MEDIA_WAIT_MS)
        page.wait_video("remoteDisplay")
    return ann, ben
