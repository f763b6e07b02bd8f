"""Devices on the Two Way Video Chat page: pickers and preview before joining, a camera switch mid-call that
changes what the other side decodes, the choice remembered.

Chromium's fake cameras differ: fake_device_0 (I420) shows a bright green picture, fake_device_2 (MJPEG) a darker
green one; fake_device_1 is a Y16 depth camera whose frames WebRTC does not encode, so it is not used here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import MEDIA_WAIT_MS, PAGE_LOAD_MS, WAIT_MS, RoomPage

pytestmark = pytest.mark.django_db

MEAN_COLOR = """(id) => {
    const video = document.querySelector(`#${id} video`);
    if (!video || !video.videoWidth) return null;
    const canvas = document.createElement("canvas");
    canvas.width = 64; canvas.height = 48;
    const g = canvas.getContext("2d");
    g.drawImage(video, 0, 0, 64, 48);
    const d = g.getImageData(0, 0, 64, 48).data;
    const sum = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) { sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2]; }
    return sum.map((v) => Math.round(v / (d.length / 4)));
}"""


def wait_color(page: RoomPage, display_id: str, test: Callable[[list[int]], bool], what: str) -> list[int]:
    """Wait (bounded) until the mean colour of the video in ``display_id`` passes ``test``."""
    color = None
    for _ in range(75):
        color = page.page.evaluate(MEAN_COLOR, display_id)
        if color and test(color):
            return color  # type: ignore[no-any-return]
        page.page.wait_for_timeout(200)
    raise AssertionError(f"#{display_id} never showed {what}: last mean colour {color}; console {page.console[-5:]}")


def median_color(page: RoomPage, display_id: str, samples: int = 5) -> list[int]:
    """The per-channel median of a few mean colours, 200 ms apart (the fake picture animates)."""
    seen = []
    for _ in range(samples):
        seen.append(page.page.evaluate(MEAN_COLOR, display_id))
        page.page.wait_for_timeout(200)
    return [sorted(c[i] for c in seen)[len(seen) // 2] for i in range(3)]


def green(c: list[int]) -> bool:
    return c[1] > c[0] + 60 and c[1] > c[2] + 60


def near(reference: list[int], tolerance: int = 12) -> Callable[[list[int]], bool]:
    return lambda c: all(abs(a - b) <= tolerance for a, b in zip(c, reference, strict=True))


def test_preview_pickers_and_switch_mid_call(open_page: Callable[..., RoomPage]) -> None:
    """Before joining: a preview, the fake devices in the pickers and a moving microphone meter. In the call,
    picking another camera swaps the track: the other page decodes the new picture, with no re-publish."""
    ann = open_page("/video-chat/")
    expect(ann.page.locator("#previewDisplay video")).to_have_count(1, timeout=WAIT_MS)
    expect(ann.el("cameraSelect").locator("option")).to_have_count(4, timeout=WAIT_MS)
    expect(ann.el("micSelect").locator("option")).to_have_count(3)
    wait_color(ann, "previewDisplay", green, "the green fake camera")
    ann.page.wait_for_function("() => document.getElementById('micMeter').value > 0.01", timeout=WAIT_MS)
    ann.screenshot("video-chat-prejoin")
    ben = open_page(ann.invite())
    ann.join("ann")
    ben.join("ben")
    expect(ben.el("remoteStatus")).to_have_text("PLAYING", timeout=MEDIA_WAIT_MS)
    wait_color(ann, "localDisplay", green, "ann's camera in her own tile")
    first = median_color(ann, "localDisplay")
    wait_color(ben, "remoteDisplay", near(first), "ann's first camera")
    played = ben.page.evaluate("document.querySelector('#remoteDisplay video').roomapiStream.id()")
    second = ann.el("cameraSelect").locator("option", has_text="fake_device_2").get_attribute("value")
    ann.el("cameraSelect").select_option(value=second)
    changed = f"the other camera in ann's tile (first {first})"
    wait_color(ann, "localDisplay", lambda c: abs(c[1] - first[1]) >= 15, changed)
    other = median_color(ann, "localDisplay")
    wait_color(ben, "remoteDisplay", near(other), "ann's other camera")
    expect(ann.el("localStatus")).to_have_text("PUBLISHING")
    assert ben.page.evaluate("document.querySelector('#remoteDisplay video').roomapiStream.id()") == played
    # The microphone switches too, and the speaker is applied to the remote video where supported.
    ann.el("micSelect").select_option(index=2)
    speaker = ben.el("speakerSelect").locator("option").nth(1).get_attribute("value")
    ben.el("speakerSelect").select_option(value=speaker)
    ben.page.wait_for_function(
        "(id) => document.querySelector('#remoteDisplay video').sinkId === id", arg=speaker, timeout=WAIT_MS
    )
    expect(ann.el("failedInfo")).to_have_text("")
    expect(ann.el("localStatus")).to_have_text("PUBLISHING")
    ben.screenshot("video-chat-after-switch")
    # The choice is remembered: a new tab of the same browser profile starts with the second camera.
    again = ann.context.new_page()
    again.goto(ann.page.url, timeout=PAGE_LOAD_MS)
    expect(again.locator("#cameraSelect")).to_have_value(second or "", timeout=WAIT_MS)
    again.close()
    ann.leave()
    ben.leave()
    ann.close()
    ben.close()
