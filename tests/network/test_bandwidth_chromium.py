"""A player on a 400 kbit/s link gets the low simulcast layer, smoothly, next to an uncapped one; lifting the cap
brings it back up.

Two namespaces joined by a veth pair (198.18.1.1 on the relay's side, 198.18.1.2 on the capped player's):
the server (relay in-process), the Chromium publisher (Web SDK, ``simulcast: true``, fake 1280x720 camera)
and the uncapped Chromium player share the first; the capped Chromium player runs alone in the second, and
``tc tbf`` limits what the relay's side of the pair sends to 400 kbit/s.  Both players ask for "high"; only
their downlink tells them apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.network.browser import NamespacedBrowser, require_chromium
from tests.network.netns import Namespace
from tests.network.players import (
    LAST_JS,
    NOW_JS,
    PLAY_JS,
    PUBLISH_JS,
    QUALITIES_JS,
    SAMPLES_JS,
    SENT_JS,
    figures,
    fps_bound,
    gap_bound,
)
from tests.network.scenario import PRIORITY
from tests.network.servers import NamespacedServer

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]

RELAY_ADDRESS = "198.18.1.1"
CAP_KBIT = 400
SETTLE_SECONDS = 60.0
"""At most this long for the capped player to come down to the low layer."""
MEASURE_SECONDS = 15.0
CLIMB_SECONDS = 15.0
ROOM = "capped"


@pytest.fixture
def hub(namespaces: Callable[[str], Namespace]) -> Iterator[tuple[Namespace, Namespace]]:
    """The relay's namespace and the capped player's, joined by c0 (relay side) and c1."""
    require_chromium()
    relay = namespaces("relay")
    capped = namespaces("capped")
    relay.veth("c0", f"{RELAY_ADDRESS}/24", peer=capped, peer_device="c1", peer_address="198.18.1.2/24")
    yield relay, capped


@pytest.fixture
def server(hub: tuple[Namespace, Namespace], transactional_db: Any) -> Iterator[NamespacedServer]:
    relay, _ = hub
    env = {"MEDIA_CONNECT_TIMEOUT": "20", "ALLOWED_HOSTS": f"127.0.0.1,{RELAY_ADDRESS}"}
    with NamespacedServer(relay, env, nice=PRIORITY, bind="0.0.0.0") as srv:
        yield srv


def last(browser: NamespacedBrowser, page: Any) -> list[Any]:
    return list(browser.run(page.evaluate(LAST_JS)) or [])


def wait_until(check: Callable[[], bool], timeout: float, message: Callable[[], str]) -> float:
    """Poll ``check`` every 0.5 s until it holds (bounded); the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(message())
        time.sleep(0.5)
    return time.monotonic() - start


def test_capped_player_gets_the_low_layer_and_climbs_back(
    hub: tuple[Namespace, Namespace], server: NamespacedServer
) -> None:
    """400 kbit/s: videoWidth <= 320 at >= 24 fps, no freeze over 1 s after settling; the uncapped player gets
    1280; the cap lifted, the capped player climbs above the low layer within 15 s.

    When the machine starves the publisher (it encodes under 25 fps), the frame rate and stall bounds are taken
    relative to what it encoded (tests.network.players.fps_bound, gap_bound).
    """
    relay, capped = hub
    relay.cap("c0", CAP_KBIT)
    inner = server.url_at("127.0.0.1")
    outer = server.url_at(RELAY_ADDRESS)
    with NamespacedBrowser(relay, nice=PRIORITY) as near, NamespacedBrowser(capped, nice=PRIORITY) as far:
        publisher = near.run(near.new_page(f"{inner}/healthz"))
        near.run(publisher.evaluate(PUBLISH_JS, {"url": server.url_at("127.0.0.1", "ws"), "login": "pub",
                                                 "room": ROOM, "width": 1280, "height": 720}), timeout=60)
        free = near.run(near.new_page(f"{inner}/healthz"))
        thin = far.run(far.new_page(f"{outer}/healthz"))
        for browser, page, login, base in ((near, free, "free", inner), (far, thin, "thin", outer)):
            browser.run(page.evaluate(PLAY_JS, {"url": base.replace("http", "ws", 1), "login": login, "room": ROOM,
                                                "publisher": "pub", "quality": "high"}), timeout=90)

        near.renice()
        far.renice()

        def describe() -> str:
            return f"capped: {last(far, thin)}, uncapped: {last(near, free)}"

        settled = wait_until(lambda: 0 < (last(far, thin) or [0] * 6)[3] <= 320, SETTLE_SECONDS, describe)
        wait_until(lambda: (last(near, free) or [0] * 6)[3] == 1280, SETTLE_SECONDS, describe)
        logger.warning("capped player on the low layer after %.1f s", settled)
        time.sleep(3.0)  # the switch's own keyframe wait is part of settling
        near.renice()
        far.renice()
        since = far.run(thin.evaluate(NOW_JS))
        free_since = near.run(free.evaluate(NOW_JS))
        sent_since = near.run(publisher.evaluate(NOW_JS))
        time.sleep(MEASURE_SECONDS)
        low = figures(far.run(thin.evaluate(SAMPLES_JS, since)))
        high = figures(near.run(free.evaluate(SAMPLES_JS, free_since)))
        sent = figures(near.run(publisher.evaluate(SENT_JS, ["q", sent_since])))
        logger.warning("capped at %d kbit/s: %s\nuncapped: %s\npublisher's low layer: %s\nqualities: capped %s, "
                       "uncapped %s", CAP_KBIT, low, high, sent, far.run(thin.evaluate(QUALITIES_JS)),
                       near.run(free.evaluate(QUALITIES_JS)))
        problems = []  # every check is made (and the climb measured) before failing
        if not low.widths or max(low.widths) > 320:
            problems.append(f"capped player left the low layer: {low}")
        if low.fps < fps_bound(sent, 24):
            problems.append(f"capped player decoded too few frames: {low}; sent: {sent}")
        if low.max_gap_ms > gap_bound(sent, 1000):
            problems.append(f"capped player froze: {low}; sent: {sent}")
        if 1280 not in high.widths:
            problems.append(f"uncapped player never got the full layer: {high}")

        relay.uncap("c0")
        lifted = time.monotonic()
        try:
            wait_until(lambda: (last(far, thin) or [0] * 6)[3] > 320, CLIMB_SECONDS, describe)
            logger.warning("cap lifted: capped player above the low layer after %.1f s", time.monotonic() - lifted)
        except AssertionError as exc:
            problems.append(f"the cap lifted, the capped player stayed on the low layer for {CLIMB_SECONDS} s: {exc}")
        assert not problems, "\n".join(problems)
