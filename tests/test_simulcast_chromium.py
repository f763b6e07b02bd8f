"""Simulcast with a real browser: Chromium publishes three layers to the relay's peers, aiortc players decode them.

No server: the Publication and Playbacks run in this process (benchmarks/simulcast.py's rig), the page in
headless Chromium with a fake 1280x720 camera.  Checks decoded widths, switching while playing, the reported
forwarded quality, dynacast, and active speakers from the audio level extension.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.simulcast import CHROMIUM, TIMEOUT, WIDTHS, SimulcastRig, until, width_reached
from tests.e2e.conftest import CHROMIUM_ARGS

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def rig(settings: Any) -> AsyncIterator[SimulcastRig]:
    """A Chromium publisher rig (skipped without Chromium, failed under CI).

    Downlink adaptation is off: on a loaded machine the players' own receive queues overflow and their loss
    would move them off the quality under test (tests/test_bandwidth.py covers adaptation).
    """
    settings.MEDIA_BANDWIDTH_ADAPTATION = False
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is required under CI ({CHROMIUM}); run scripts/system-deps.sh")
        pytest.skip(f"needs Chromium at {CHROMIUM}")
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
        )
        instance = SimulcastRig(browser)
        try:
            yield instance
        finally:
            await instance.close()
            await browser.close()


async def test_players_choose_layers_and_switch_while_playing(rig: SimulcastRig) -> None:
    """A low and a high player decode 320 and 1280 wide frames of one publisher; the low one switches to high
    and back while playing; the forwarded quality is reported; dynacast follows what players want."""
    await rig.publish()
    assert rig.wanted == [{"q"}]  # nobody plays yet: only the lowest layer is wanted
    low, low_track, low_reports = await rig.play("low")
    await width_reached(low_track, WIDTHS["low"])
    assert low_reports == ["low"]
    high, high_track, high_reports = await rig.play("high")
    await width_reached(high_track, WIDTHS["high"])
    await until(lambda: high_reports[-1:] == ["high"], TIMEOUT, f"reports {high_reports}")  # maybe via medium
    assert rig.wanted[-1] == {"q", "h", "f"}
    await high.close()  # one 1280x720 decoder at a time: a loaded machine decodes slowly
    medium, medium_track, _ = await rig.play("medium")
    await width_reached(medium_track, WIDTHS["medium"])
    low.set_quality("high")
    await width_reached(low_track, WIDTHS["high"])
    low.set_quality("low")
    await width_reached(low_track, WIDTHS["low"])
    await until(lambda: low_reports[-1:] == ["low"] and "high" in low_reports, TIMEOUT, f"reports {low_reports}")
    await width_reached(medium_track, WIDTHS["medium"])  # the other player was never disturbed
    await medium.close()
    await until(lambda: rig.wanted[-1] == {"q"}, TIMEOUT, f"dynacast never settled: {rig.wanted}")
    await width_reached(low_track, WIDTHS["low"])  # the wanted layer keeps flowing


async def test_active_speakers_from_the_audio_level_extension(rig: SimulcastRig) -> None:
    """Silence is nobody speaking; a tone makes the publication the active speaker; silence again ends it."""
    await rig.publish(audio=True)
    stream_id = rig.publication.stream_id
    await until(lambda: rig.publication.ingests["audio"].packets_received > 50, TIMEOUT, "no audio")
    assert stream_id not in rig.speakers.speaking()
    await rig.page.evaluate("window.setTone(true)")
    await until(lambda: bool(rig.speaking) and rig.speaking[-1] == [stream_id], TIMEOUT, f"{rig.speaking}")
    await rig.page.evaluate("window.setTone(false)")
    await until(lambda: rig.speaking[-1] == [], TIMEOUT, f"never quiet again: {rig.speaking}")
