"""Browsers that hide their addresses behind mDNS (Chromium's default) still connect to the relay."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Playwright

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, RoomPage, video_chat_pair

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
    ann, ben = video_chat_pair(open_page)
    ann.leave()
    ben.leave()
