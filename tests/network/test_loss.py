"""Random UDP loss on every hop: the three-way chat keeps decoding (tests/network/scenario.py).

Server and clients share one namespace; an nftables rule drops N % of every UDP packet arriving in it, so
each hop (publisher to relay, relay to player) loses N % independently, RTCP and retransmissions included.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.network.netns import Namespace
from tests.network.scenario import PRIORITY, Report, run_chat, table
from tests.network.servers import NamespacedServer

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.django_db(transaction=True)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SECONDS = 15.0
RUNS = itertools.count(1)
SERVER_ENV = {"MEDIA_CONNECT_TIMEOUT": "15", "MEDIA_PUBLISHER_MAX_BITRATE": "600000"}
"""600 kbit/s is plenty for the 320x240 test camera (aiortc's encoder would otherwise climb to 1.5 Mbit/s)."""


@pytest.fixture
def server(lan: Namespace, transactional_db: Any) -> Iterator[NamespacedServer]:
    """A daphne process (relay in-process) inside the namespace."""
    with NamespacedServer(lan, SERVER_ENV, nice=PRIORITY) as srv:
        yield srv


def chat(lan: Namespace, server: NamespacedServer, loss: int) -> Report:
    lan.drop_udp(loss)
    report = run_chat(lan, server, f"loss-{loss}-{next(RUNS)}", seconds=SECONDS)  # a re-run gets a room of its own
    logger.warning("three-way chat at %d%% loss on every hop:\n%s", loss, table(report))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"network-loss-{loss}.json").write_text(json.dumps(report, indent=1))
    return report


def streams(report: Report) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{viewer}<-{publisher}", f) for viewer, played in report.items() for publisher, f in played.items()]


BUSY_STALL_MS = 200.0
"""A viewer whose event loop woke this late was starved of CPU by other work on the machine."""


def check(lan: Namespace, server: NamespacedServer, loss: int, verify: Callable[[Report], None]) -> None:
    """Run the chat and ``verify`` it; once more if it failed while a viewer was starved of CPU."""
    report = chat(lan, server, loss)
    try:
        verify(report)
    except AssertionError:
        stalls = [f["viewer_max_stall_ms"] for _, f in streams(report)]
        if max(stalls) < BUSY_STALL_MS:
            raise
        logger.warning("viewers stalled up to %.0f ms (a busy machine): running the chat once more", max(stalls))
        verify(chat(lan, server, loss))


def smooth(report: Report) -> None:
    shown = table(report)
    for name, figures in streams(report):
        assert figures["fps"] >= 24, f"{name} decoded {figures['fps']} fps\n{shown}"
        assert figures["max_gap_ms"] <= 500, f"{name} froze {figures['max_gap_ms']} ms\n{shown}"


def decoding(report: Report) -> None:
    shown = table(report)
    for name, figures in streams(report):
        assert figures["first_frame_ms"] is not None, f"{name} never decoded a frame\n{shown}"
        assert figures["frames"] > 0, f"{name} decoded nothing after the first 3 s\n{shown}"
        assert figures["last_frame_age_ms"] < 2000, f"{name} froze for good\n{shown}"
        assert figures["audio_frames"] > 0, f"{name} played no audio\n{shown}"


@pytest.mark.parametrize("loss", [0, 3])
def test_chat_is_smooth_at_low_loss(lan: Namespace, server: NamespacedServer, loss: int) -> None:
    """At 3 % loss on every hop each played stream decodes >= 24 fps with no freeze over 500 ms after 3 s."""
    check(lan, server, loss, smooth)


@pytest.mark.parametrize("loss", [5, 8, 10])
def test_chat_keeps_decoding_at_high_loss(lan: Namespace, server: NamespacedServer, loss: int) -> None:
    """Up to 10 % loss on every hop no stream fails to start and none freezes for good."""
    check(lan, server, loss, decoding)
