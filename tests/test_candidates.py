"""media_relay.candidates: which remote ICE candidates the relay accepts (no sockets)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from media_relay import candidates
from media_relay.contract import MediaError, MediaErrorCode


def line(host: str, port: int = 50000, transport: str = "udp") -> str:
    """A host candidate line as an SDP attribute."""
    return f"a=candidate:1 1 {transport} 2130706431 {host} {port} typ host"


def offer(*candidate_lines: str) -> str:
    """A minimal SDP with a media section holding ``candidate_lines``."""
    head = ["v=0", "o=- 1 2 IN IP4 0.0.0.0", "s=-", "t=0 0", "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:0"]
    return "\r\n".join([*head, *candidate_lines, "a=rtpmap:96 VP8/90000"]) + "\r\n"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.8.0.1", "::1", "0.0.0.0", "::", "169.254.169.254", "fe80::1", "fe80::1%eth0",
     "224.0.0.251", "ff02::1", "255.255.255.255", "240.0.0.1", "::ffff:127.0.0.1", "redis.internal"],
)
def test_refused_addresses(host: str) -> None:
    """Loopback, unspecified, link-local, multicast, reserved, IPv4-mapped loopback and host names are refused."""
    assert candidates.refusal(host) is not None


@pytest.mark.parametrize("host", ["10.0.0.5", "192.168.1.20", "172.16.0.9", "fd00::2", "100.64.0.1", "198.18.0.1"])
def test_private_addresses_follow_the_setting(host: str) -> None:
    """Private ranges are accepted by default (LAN use) and refused when MEDIA_ALLOW_PRIVATE_CANDIDATES is off."""
    assert candidates.refusal(host) is None
    with override_settings(MEDIA_ALLOW_PRIVATE_CANDIDATES=False):
        assert candidates.refusal(host) is not None


@pytest.mark.parametrize("host", ["8.8.8.8", "2001:4860:4860::8888"])
def test_public_addresses_are_accepted(host: str) -> None:
    """Global addresses are accepted whatever the private setting."""
    with override_settings(MEDIA_ALLOW_PRIVATE_CANDIDATES=False):
        assert candidates.refusal(host) is None


def test_an_offer_keeps_its_good_candidates_and_loses_the_refused_and_mdns_ones() -> None:
    """Refused and mDNS candidates are dropped; the rest of the SDP is untouched; kept addresses are counted."""
    sdp = offer(line("8.8.8.8"), line("127.0.0.1", 6379), line("1b2c.local"), line("8.8.8.8"))
    screened, kept = candidates.screen_offer(sdp)
    assert kept == 1
    assert "127.0.0.1" not in screened and ".local" not in screened
    assert screened.count("8.8.8.8") == 2 and "a=rtpmap:96 VP8/90000" in screened


def test_an_offer_with_only_refused_candidates_is_refused_naming_them() -> None:
    """candidate_refused when none of the offer's candidates is left."""
    with pytest.raises(MediaError) as refused:
        candidates.screen_offer(offer(line("127.0.0.1", 6379), line("169.254.169.254", 80)))
    assert refused.value.code == MediaErrorCode.CANDIDATE_REFUSED
    assert "127.0.0.1" in refused.value.message and "169.254.169.254" in refused.value.message


def test_offers_without_candidates_or_with_only_mdns_ones_pass() -> None:
    """Trickling clients send none; Chromium's mDNS-only offers are kept (without the names)."""
    assert candidates.screen_offer(offer()) == (offer(), 0)
    screened, kept = candidates.screen_offer(offer(line("1b2c.local")))
    assert kept == 0 and ".local" not in screened


def test_too_many_distinct_candidates_are_refused_before_any_is_looked_at() -> None:
    """More distinct transport addresses than MEDIA_MAX_CANDIDATES_PER_OFFER: too_many_candidates."""
    with override_settings(MEDIA_MAX_CANDIDATES_PER_OFFER=3):
        candidates.screen_offer(offer(*[line("8.8.8.8", 1000 + n) for n in range(3)] * 5))  # repeats count once
        with pytest.raises(MediaError) as refused:
            candidates.screen_offer(offer(*[line("127.0.0.1", 1000 + n) for n in range(4)]))
    assert refused.value.code == MediaErrorCode.TOO_MANY_CANDIDATES


def test_trickled_candidates() -> None:
    """A trickled address is added, an mDNS name ignored, a refused address an error, a bad line invalid_field."""
    assert candidates.screen_trickled("candidate:1 1 udp 2130706431 8.8.8.8 3478 typ host") is True
    assert candidates.screen_trickled("candidate:1 1 udp 2130706431 1b2c.local 3478 typ host") is False
    assert candidates.screen_trickled(None) is False
    with pytest.raises(MediaError) as refused:
        candidates.screen_trickled("candidate:1 1 udp 2130706431 169.254.169.254 80 typ host")
    assert refused.value.code == MediaErrorCode.CANDIDATE_REFUSED
    with pytest.raises(MediaError) as bad:
        candidates.screen_trickled("candidate:garbage")
    assert bad.value.code == MediaErrorCode.INVALID_FIELD
