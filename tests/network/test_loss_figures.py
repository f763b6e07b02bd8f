"""The figures of docs/performance.md, "Real networks": the chat at 0-10 % loss, without and with our recovery.

A measurement, not a check: it runs only with LOSS_FIGURES=1 (about 7 minutes) and writes
artifacts/loss-figures.json.  "aiortc" is the recovery aiortc does alone (the relay NACKs a gap once,
the players keep aiortc's jitter buffers); "ours" adds media_relay/recovery.py and roomapi/recovery.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.network.netns import Namespace
from tests.network.scenario import PRIORITY, run_chat, table
from tests.network.servers import NamespacedServer
from tests.network.test_loss import ARTIFACTS, SECONDS, SERVER_ENV

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(os.environ.get("LOSS_FIGURES") != "1", reason="a measurement: run with LOSS_FIGURES=1"),
]

RESULTS: dict[str, Any] = {}


@pytest.fixture(params=["aiortc", "ours"])
def recovery(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(lan: Namespace, transactional_db: Any, recovery: str) -> Iterator[NamespacedServer]:
    env = dict(SERVER_ENV, MEDIA_NACK_RETRY_SECONDS="0" if recovery == "aiortc" else "0.05")
    with NamespacedServer(lan, env, nice=PRIORITY) as srv:
        yield srv


@pytest.mark.parametrize("loss", [0, 3, 5, 8, 10])
def test_figures(lan: Namespace, server: NamespacedServer, recovery: str, loss: int) -> None:
    """One run of the chat; its table is printed (-s) and kept."""
    lan.drop_udp(loss)
    report = run_chat(lan, server, f"figures-{recovery}-{loss}", seconds=SECONDS, recovery=recovery == "ours")
    RESULTS[f"{recovery} {loss}%"] = report
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "loss-figures.json").write_text(json.dumps(RESULTS, indent=1))
    print(f"\n=== {recovery}, {loss} % loss on every hop\n{table(report)}", flush=True)
