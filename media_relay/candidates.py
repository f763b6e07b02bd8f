"""Which remote ICE candidates the relay accepts: none that would make it probe this host or its link.

A client's candidates tell the relay where to send STUN connectivity checks.
Unscreened, an offer (or trickled ``ice``) pointing at ``127.0.0.1:6379``, the
cloud metadata address or a victim's ports turns the relay into a reflector and
a port scanner.  So, before any peer connection sees them:

- at most ``MEDIA_MAX_CANDIDATES_PER_OFFER`` distinct transport addresses per offer
  (``too_many_candidates``); the worker applies the same cap to an offer plus its
  trickled candidates;
- loopback, link-local, multicast, unspecified and reserved addresses (IPv4-mapped
  IPv6 too) are refused; private ranges (RFC 1918, ULA, CGNAT, test networks) only
  when ``MEDIA_ALLOW_PRIVATE_CANDIDATES`` is on (the default, for LAN use); host
  names other than mDNS are refused (``candidate_refused``);
- mDNS names (``*.local``, Chromium's default host candidates) are dropped unresolved:
  resolving them would query the relay's own link and trust whatever answers.  The
  relay still reaches such a browser: its checks to the relay's candidates give the
  relay a peer-reflexive candidate.

Offers lose their refused candidates; an offer left with none of its candidates is
refused, naming them.  A trickled refused candidate is an error; a trickled mDNS one
is ignored (acknowledged, not added).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from django.conf import settings

from media_relay.contract import MediaError, MediaErrorCode

logger = logging.getLogger(__name__)

MDNS_SUFFIX = ".local"


@dataclass(frozen=True)
class Candidate:
    """The fields of a candidate line the relay screens on."""

    transport: str
    host: str
    port: str

    @property
    def address(self) -> tuple[str, str, str]:
        """Its transport address, to count distinct ones."""
        return (self.transport.lower(), self.host.lower(), self.port)

    @property
    def is_mdns(self) -> bool:
        """An mDNS name (``<uuid>.local``) instead of an address."""
        return self.host.lower().rstrip(".").endswith(MDNS_SUFFIX)


def parse(line: str) -> Candidate:
    """A candidate line (``candidate:...`` with or without ``a=``); invalid_field when it is not one."""
    text = line.removeprefix("a=").removeprefix("candidate:")
    fields = text.split()
    if len(fields) < 8 or fields[6] != "typ" or not fields[5].isdigit():
        raise MediaError(MediaErrorCode.INVALID_FIELD, "bad ICE candidate: not a candidate line")
    return Candidate(fields[2], fields[4], fields[5])


def refusal(host: str) -> str | None:
    """Why the relay must not send checks to ``host`` (an address or a name); None when it may."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return "a host name instead of an address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in settings.MEDIA_ALLOWED_CANDIDATE_NETWORKS:
        if address in ipaddress.ip_network(network, strict=False):
            return None
    for refused, why in (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
    ):
        if refused:
            return why
    if not address.is_global and not settings.MEDIA_ALLOW_PRIVATE_CANDIDATES:
        return "a private address (MEDIA_ALLOW_PRIVATE_CANDIDATES is off)"
    return None


def _refused(candidate: Candidate, why: str) -> MediaError:
    return MediaError(MediaErrorCode.CANDIDATE_REFUSED, f"ICE candidate {candidate.host} refused: {why}")


def screen_offer(sdp: str) -> tuple[str, int]:
    """``sdp`` without the candidates the relay refuses or drops, and how many distinct addresses it keeps."""
    limit = settings.MEDIA_MAX_CANDIDATES_PER_OFFER
    lines = sdp.split("\r\n") if "\r\n" in sdp else sdp.split("\n")
    parsed = [(line, parse(line)) for line in lines if line.startswith("a=candidate:")]
    if not parsed:
        return sdp, 0
    if limit and len({c.address for _, c in parsed}) > limit:
        raise MediaError(
            MediaErrorCode.TOO_MANY_CANDIDATES, f"the offer has more than {limit} distinct ICE candidates"
        )
    dropped: set[str] = set()
    refused: list[str] = []
    kept: set[tuple[str, str, str]] = set()
    for line, candidate in parsed:
        if candidate.is_mdns:
            dropped.add(line)
            continue
        why = refusal(candidate.host)
        if why is None:
            kept.add(candidate.address)
            continue
        dropped.add(line)
        refused.append(f"{candidate.host} ({why})")
    if refused and not kept:
        raise MediaError(
            MediaErrorCode.CANDIDATE_REFUSED, "every ICE candidate of the offer was refused: " + ", ".join(refused)
        )
    if refused:
        logger.info("dropped refused ICE candidates from an offer: %s", ", ".join(refused))
    if not dropped:
        return sdp, len(kept)
    separator = "\r\n" if "\r\n" in sdp else "\n"
    return separator.join(line for line in lines if line not in dropped), len(kept)


def screen_trickled(line: str | None) -> bool:
    """Whether to add a trickled candidate: False for end-of-candidates' empty line and mDNS names (ignored);
    candidate_refused when the relay must not check it."""
    if not line:
        return False
    candidate = parse(line)
    if candidate.is_mdns:
        return False
    why = refusal(candidate.host)
    if why is not None:
        raise _refused(candidate, why)
    return True
