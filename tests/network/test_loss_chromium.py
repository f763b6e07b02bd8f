"""Random UDP loss on every hop, in Chromium: the three-way chat of Web SDK pages keeps decoding.

The server and one Chromium with three pages (ann, bob, cat: each publishes its fake camera at 320x240 and
microphone, and plays the two others) share one namespace (the ``lan`` fixture); an nftables rule drops N % of
every UDP packet arriving in it, so each hop (publisher to relay, relay to player) loses N %.  Each page
samples its players' ``getStats()`` (framesDecoded, freezeCount, totalFreezesDuration) and its own publisher's
(framesEncoded) every 100 ms.  When the machine starves a publisher (under 25 fps encoded), its players' frame
rate and stall bounds are taken relative to what it encoded (tests.network.players.fps_bound, gap_bound).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.network.browser import NamespacedBrowser, require_chromium
from tests.network.netns import Namespace
from tests.network.players import CHAT_JS, CHAT_SAMPLES_JS, CHAT_SENT_JS, Figures, figures, fps_bound, gap_bound
from tests.network.scenario import PEOPLE, PRIORITY
from tests.network.servers import NamespacedServer
from tests.network.test_loss import ARTIFACTS, SERVER_ENV

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

WARMUP = 3.0
SECONDS = 15.0
Report = dict[str, Figures]
"""viewer<-publisher -> what the viewer decoded."""


@pytest.fixture
def server(lan: Namespace, transactional_db: Any) -> Iterator[NamespacedServer]:
    require_chromium()
    with NamespacedServer(lan, SERVER_ENV, nice=PRIORITY) as srv:
        yield srv


def chat(lan: Namespace, server: NamespacedServer, loss: int) -> Report:
    """Three pages publish and play each other for WARMUP + SECONDS at ``loss`` %; the figures of the window."""
    lan.drop_udp(loss)
    room = f"chromium-loss-{loss}"
    with NamespacedBrowser(lan, nice=PRIORITY) as browser:
        pages = {}
        for name in PEOPLE:
            page = browser.run(browser.new_page(f"{server.http_url}/healthz"))
            others = [other for other in PEOPLE if other != name]
            browser.run(page.evaluate(CHAT_JS, {"url": server.ws_url, "login": name, "room": room, "others": others}),
                        timeout=60)
            pages[name] = page
        publish_ms = {name: round(browser.run(page.evaluate("window.chat.publishMs"))) for name, page in pages.items()}
        logger.warning("publish() to PUBLISHING at %d%% loss, ms: %s", loss, publish_ms)
        started = {name: browser.run(page.evaluate("window.chatPlay()"), timeout=60) for name, page in pages.items()}
        browser.renice()
        time.sleep(WARMUP + SECONDS)
        report: Report = {}
        for name, page in pages.items():
            since = started[name] + WARMUP * 1000
            samples = browser.run(page.evaluate(CHAT_SAMPLES_JS, since))
            report[f"{name} sent"] = figures(browser.run(page.evaluate(CHAT_SENT_JS, since)))
            for publisher in PEOPLE:
                if publisher != name:
                    report[f"{name}<-{publisher}"] = figures(samples.get(publisher) or [])
    logger.warning("Chromium chat at %d%% loss on every hop:\n%s", loss,
                   "\n".join(f"{key}: {value}" for key, value in sorted(report.items())))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"network-loss-chromium-{loss}.json").write_text(
        json.dumps({key: vars(value) for key, value in report.items()}, indent=1))
    return report


def played(report: Report) -> list[tuple[str, Figures, Figures]]:
    """(viewer<-publisher, what the viewer decoded, what the publisher encoded) per played stream."""
    return [(key, seen, report[f"{key.split('<-')[1]} sent"]) for key, seen in report.items() if "<-" in key]


def smooth(report: Report) -> None:
    """>= 24 fps and no stall over 500 ms (relative to what a CPU-starved publisher encoded)."""
    shown = "\n".join(f"{key}: {value}" for key, value in sorted(report.items()))
    for name, seen, sent in played(report):
        assert seen.fps >= fps_bound(sent, 24), f"{name} decoded {seen.fps} fps\n{shown}"
        assert seen.max_gap_ms <= gap_bound(sent, 500), f"{name} froze {seen.max_gap_ms} ms\n{shown}"


def decoding(report: Report) -> None:
    shown = "\n".join(f"{key}: {value}" for key, value in sorted(report.items()))
    for name, seen, _ in played(report):
        assert seen.fps > 0, f"{name} decoded nothing after the first {WARMUP:.0f} s\n{shown}"
        assert seen.last_frame_age_ms < 2000, f"{name} froze for good\n{shown}"


@pytest.mark.parametrize("loss", [3])
def test_chromium_chat_is_smooth_at_low_loss(lan: Namespace, server: NamespacedServer, loss: int) -> None:
    """At 3 % loss on every hop each played stream decodes >= 24 fps with no freeze over 500 ms after 3 s."""
    smooth(chat(lan, server, loss))


@pytest.mark.parametrize("loss", [10])
def test_chromium_chat_keeps_decoding_at_high_loss(lan: Namespace, server: NamespacedServer, loss: int) -> None:
    """At 10 % loss on every hop every stream starts and none freezes for good."""
    decoding(chat(lan, server, loss))
