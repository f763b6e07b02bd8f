"""Browsers that hide their addresses behind mDNS (Chromium's default) still connect to the relay."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Playwright, expect

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, RoomPage

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Chromium as users run it: host candidates are .local mDNS names, not addresses."""
    args = [a for a in CHROMIUM_ARGS if a != "--disable-features=WebRtcHideLocalIpsWithMdns"]
    instance = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=args, timeout=60_000)
    try:
        yield instance
    finally:
        instance.close()


def test_two_pages_with_mdns_candidates_see_each_other(open_page: Callable[..., RoomPage]) -> None:
    """Both pages publish and play through the relay although every candidate they send is an mDNS name."""
    ann = open_page("/video-chat/")
    ben = open_page(ann.invite())
    ann.join("ann")
    ben.join("ben")
    for page, other in ((ann, "ben"), (ben, "ann")):
        expect(page.el("remoteName")).to_have_text(other, timeout=WAIT_MS)
        expect(page.el("remoteStatus")).to_have_text("PLAYING", timeout=20_000)
        page.wait_video("remoteDisplay")
    ann.leave()
    ben.leave()
