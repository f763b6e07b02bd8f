"""H.264 simulcast: Chromium (its OpenH264 encoder) publishes three H.264 layers; the relay maps them by rid as for
VP8 and aiortc players decode the layer they ask for, switching while playing.

The rig of tests/test_simulcast_chromium.py (benchmarks/simulcast.py, no server) with the page offering H.264
(packetization mode 1) only.  Skipped where Chromium has no H.264 encoder (failed under CI).
"""

from __future__ import annotations

import os

import pytest

from benchmarks.simulcast import TIMEOUT, WIDTHS, SimulcastRig, until, width_reached
from tests.test_simulcast_chromium import rig

pytestmark = pytest.mark.timeout(240)

__all__ = ["rig"]

H264_SENDER_JS = """() => RTCRtpSender.getCapabilities("video").codecs.some(
  (c) => c.mimeType.toLowerCase() === "video/h264" && (c.sdpFmtpLine || "").includes("packetization-mode=1"))"""


async def test_h264_layers_by_quality_and_switching(rig: SimulcastRig) -> None:
    """Low and high players decode 320 and 1280 wide H.264 frames; the low one switches up and back."""
    context = await rig.browser.new_context()
    probe = await context.new_page()
    has_h264 = await probe.evaluate(H264_SENDER_JS)
    await context.close()
    if not has_h264:
        if os.environ.get("CI") == "true":
            pytest.fail("this Chromium has no H.264 encoder")
        pytest.skip("this Chromium has no H.264 encoder")
    await rig.publish(codec="H264")
    assert rig.publication.ingests["video"].codec.name == "H264"
    assert rig.publication.ingests["video"].layer_count == 3
    low, low_track, low_reports = await rig.play("low")
    await width_reached(low_track, WIDTHS["low"])
    high, high_track, high_reports = await rig.play("high")
    await width_reached(high_track, WIDTHS["high"])
    await until(lambda: high_reports[-1:] == ["high"], TIMEOUT, f"reports {high_reports}")
    await high.close()  # one 1280x720 decoder at a time
    low.set_quality("high")
    await width_reached(low_track, WIDTHS["high"])
    low.set_quality("low")
    await width_reached(low_track, WIDTHS["low"])
    await until(lambda: low_reports[-1:] == ["low"] and "high" in low_reports, TIMEOUT, f"reports {low_reports}")
