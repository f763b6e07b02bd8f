"""Headless Chromium inside a network namespace, driven by Playwright.

A process inherits the network namespace of the thread that forks it, so :class:`NamespacedBrowser` runs an
event loop in a thread that has entered the namespace and starts Playwright there: Playwright's driver and
the Chromium it launches live in the namespace, and every socket the browser opens (HTTP, WebSocket, ICE) uses
the namespace's interfaces only.  The test talks to the browser through :meth:`NamespacedBrowser.run`, which
runs a coroutine on that loop (bounded).

    with NamespacedBrowser(capped) as browser:
        page = browser.run(browser.new_page(f"http://198.18.1.1:{port}/healthz"))
        browser.run(page.evaluate("1 + 1"))
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import pytest

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.network.netns import Namespace, _enter

logger = logging.getLogger(__name__)

T = TypeVar("T")

START_TIMEOUT = 60.0
CALL_TIMEOUT = 60.0


def require_chromium() -> None:
    """Skip (fail under CI) without Chromium."""
    if shutil.which(CHROMIUM) or Path(CHROMIUM).exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"Chromium is required under CI ({CHROMIUM}); run scripts/system-deps.sh")
    pytest.skip(f"needs Chromium at {CHROMIUM}")


class NamespacedBrowser:
    """One Chromium (Playwright's async API on its own loop) whose network is ``namespace``'s."""

    def __init__(self, namespace: Namespace, extra_args: list[str] | None = None, nice: int = 0) -> None:
        self.namespace = namespace
        self.nice = nice
        """The browser's scheduling priority (inherited from the thread that starts Playwright's driver)."""
        self.args = [*CHROMIUM_ARGS, *(extra_args or [])]
        self.loop: asyncio.AbstractEventLoop | None = None
        self.browser: Any = None
        self._driver: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"chromium-{namespace.name}", daemon=True)

    def _main(self) -> None:
        try:
            _enter(self.namespace.name)
            if self.nice:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._launch())
        except BaseException as exc:  # handed to the test thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _launch(self) -> None:
        from playwright.async_api import async_playwright

        self._driver = await async_playwright().start()
        self.browser = await self._driver.chromium.launch(executable_path=CHROMIUM, args=self.args)

    def start(self) -> None:
        """Start the thread and the browser (bounded); the launch's error if it failed."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError(f"Chromium did not start within {START_TIMEOUT} s in {self.namespace.name}")
        if self._error is not None:
            raise self._error

    def renice(self) -> None:
        """Give every thread of every process in the namespace the browser's priority (Chromium resets the
        niceness of the processes it forks; threads started later inherit their creator's)."""
        if not self.nice:
            return
        pids = subprocess.run(["ip", "netns", "pids", self.namespace.name], capture_output=True, text=True,
                              timeout=10, check=False).stdout.split()
        for pid in pids:
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    os.setpriority(os.PRIO_PROCESS, int(tid), self.nice)
                except OSError:
                    pass

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``coroutine`` on the browser's loop and return its result (bounded by ``timeout``)."""
        assert self.loop is not None
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    async def new_page(self, url: str) -> Any:
        """A tab of a new context, at ``url``."""
        context = await self.browser.new_context()
        page = await context.new_page()
        await page.goto(url)
        return page

    async def _stop(self) -> None:
        try:
            if self.browser is not None:
                await self.browser.close()
        finally:
            if self._driver is not None:
                await self._driver.stop()

    def close(self) -> None:
        """Close the browser and end the thread (bounded; the namespace's deletion kills what is left)."""
        if self.loop is None or not self._thread.is_alive():
            return
        try:
            self.run(self._stop(), timeout=30)
        except Exception:  # best effort: the namespace's deletion kills the processes
            logger.debug("closing Chromium failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
