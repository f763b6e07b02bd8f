"""The connection-quality mark of a tile reacts to loss (Chromium, a network namespace, nftables).

The server and one Chromium (two Video Chat pages, each publishing its camera in simulcast and playing the
other's) run inside a namespace of this test (tests/network/netns.py): the browser is launched from a thread
that entered it, so every socket of the browser uses the namespace's interfaces, whose addresses come from
198.18.0.0/15.  Random UDP loss on every hop (an nftables rule on the namespace's input) turns the player's
mark from good to fair or poor, the stats panel shows the loss, and the mark is good again once the loss is
gone.  Needs root (skipped with the reason elsewhere, never under CI=true); the namespace is always removed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MEDIA_WAIT_MS, WAIT_MS, RoomPage
from tests.network.conftest import _no_leftovers, lan, namespaces  # noqa: F401 - the namespace fixtures
from tests.network.netns import Namespace
from tests.network.servers import NamespacedServer

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.django_db(transaction=True)

LOSS = 25
"""% of UDP packets dropped on every hop: audio has no retransmission, so the player's loss is well above 2 %."""
SERVER_ENV = {"MEDIA_CONNECT_TIMEOUT": "20"}
SCENARIO_TIMEOUT = 360.0
SETTLE_S = 60.0
"""Bound of each wait for the mark (a busy machine decodes slowly at first)."""


@pytest.fixture
def loss_server(lan: Namespace, transactional_db: Any) -> Iterator[NamespacedServer]:  # noqa: F811
    """A daphne process (relay in-process) inside the namespace."""
    with NamespacedServer(lan, SERVER_ENV) as srv:
        yield srv


def wait_mark(page: RoomPage, wanted: tuple[str, ...], what: str) -> list[str]:
    """Wait (bounded) until the remote camera tile's mark is one of ``wanted``; the marks seen meanwhile."""
    seen: list[str] = []
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        mark = str(page.page.locator("#remote .quality").get_attribute("data-quality"))
        if not seen or seen[-1] != mark:
            seen.append(mark)
        if mark in wanted:
            return seen
        page.page.wait_for_timeout(500)
    raise AssertionError(f"{what}: the mark never became {wanted} within {SETTLE_S} s (seen {seen})")


def stats_row(page: RoomPage) -> dict[str, str]:
    """The stats panel's row of the remote camera: column header -> cell text."""
    return page.page.evaluate(  # type: ignore[no-any-return]
        """() => {
            const heads = [...document.querySelectorAll("#statsCard thead th")].map((th) => th.textContent.trim());
            const row = document.querySelector("#statsBody tr[data-kind='camera']");
            if (!row) return {};
            const cells = [...row.children].map((c) => c.textContent.trim());
            return Object.fromEntries(heads.map((h, i) => [h, cells[i]]));
        }"""
    )


def scenario(namespace: Namespace, server: NamespacedServer) -> dict[str, Any]:
    """Run in a thread inside the namespace: two pages, the mark before, during and after the loss."""
    figures: dict[str, Any] = {"loss_pct": LOSS}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            pages = []
            for _ in range(2):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                context.set_default_timeout(WAIT_MS)
                page = context.new_page()
                page.goto(f"{server.http_url}/video-chat/?roomName=lossy", timeout=60_000)
                pages.append(RoomPage(page, context))
            ann, ben = pages
            ann.join("ann")
            ben.join("ben")
            expect(ben.el("remoteStatus")).to_have_text("PLAYING", timeout=MEDIA_WAIT_MS)
            ben.wait_video("remoteDisplay", timeout_s=30)
            ben.page.locator("#statsCard summary").click()
            figures["before"] = wait_mark(ben, ("good",), "before the loss")
            figures["stats_before"] = stats_row(ben)

            namespace.drop_udp(LOSS)
            figures["during"] = wait_mark(ben, ("fair", "poor"), f"at {LOSS}% loss")
            ben.page.wait_for_timeout(3000)
            figures["stats_during"] = stats_row(ben)
            figures["mark_during"] = ben.page.locator("#remote .quality").get_attribute("data-quality")
            figures["layer_during"] = ben.page.locator("#remote .layer").get_attribute("data-layer")
            ben.screenshot("video-chat-loss-desktop")

            namespace.drop_udp(0)
            figures["after"] = wait_mark(ben, ("good",), "after the loss ended")
            figures["stats_after"] = stats_row(ben)
        finally:
            browser.close()
    return figures


def test_quality_mark_reacts_to_loss(lan: Namespace, loss_server: NamespacedServer) -> None:  # noqa: F811
    """good on a clean link; fair or poor (and the loss in the stats panel) at 25 % loss; good again after."""
    figures = lan.call(lambda: scenario(lan, loss_server), timeout=SCENARIO_TIMEOUT)
    logger.warning("quality mark under loss: %s", json.dumps(figures))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "quality-under-loss.json").write_text(json.dumps(figures, indent=1))
    assert figures["mark_during"] in ("fair", "poor"), figures
    assert float(figures["stats_during"]["Loss %"]) >= 2.0, figures
