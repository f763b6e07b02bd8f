"""media_relay.aiortc_compat: the version guard and the worker-start patches."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aioice.ice
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

import media_relay.aiortc_compat as compat
from media_relay.stats import STATS

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


def test_version_check_names_the_supported_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another aiortc than the one the private accesses were read from fails with a clear message."""
    monkeypatch.setattr(compat, "version", lambda package: "9.9.9")
    with pytest.raises(compat.UnsupportedVersionError, match=r"aiortc==1\.16\.0.*found aiortc==9\.9\.9"):
        compat.check_versions()


def test_installed_versions_are_supported() -> None:
    """The pinned stack passes the guard."""
    compat.check_versions()


def test_install_counts_codecs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """After install(), every aiortc decoder and encoder is counted; a second install() does not count twice."""
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", aiortc.rtcrtpreceiver.get_decoder)
    monkeypatch.setattr(aiortc.rtcrtpsender, "get_encoder", aiortc.rtcrtpsender.get_encoder)
    monkeypatch.setattr(aioice.ice, "asyncio", asyncio)
    monkeypatch.setattr(compat, "_installed_ports", None)
    compat.install("")
    compat.install("")
    decoders, encoders = STATS.decoders_created, STATS.encoders_created
    aiortc.rtcrtpreceiver.get_decoder(OPUS)
    aiortc.rtcrtpsender.get_encoder(OPUS)
    assert (STATS.decoders_created, STATS.encoders_created) == (decoders + 1, encoders + 1)


async def test_install_binds_ice_ports_in_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a port range, aioice's UDP sockets bind inside it; an empty range restores any port."""
    monkeypatch.setattr(aioice.ice, "asyncio", asyncio)
    monkeypatch.setattr(compat, "_installed_ports", None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        low = probe.getsockname()[1]
    low = min(max(low, 20000), 60000)
    compat.install(f"{low}-{low + 50}")
    loop: Any = aioice.ice.asyncio.get_running_loop()  # type: ignore[attr-defined]
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    try:
        assert low <= transport.get_extra_info("sockname")[1] <= low + 50
    finally:
        transport.close()
    compat.install("")
    assert aioice.ice.asyncio is asyncio  # type: ignore[attr-defined]


async def test_the_relay_answers_as_the_dtls_server_where_the_offer_lets_it() -> None:
    """An ``actpass`` offer is answered ``passive`` (the offerer retransmits the handshake, on its faster timer) and
    the two still connect; an offer that chose a role keeps it."""
    from aiortc import RTCPeerConnection

    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.addTransceiver("audio", direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        assert "a=setup:actpass" in offerer.localDescription.sdp
        await answerer.setRemoteDescription(offerer.localDescription)
        compat.prefer_dtls_server(answerer, offerer.localDescription.sdp)
        await answerer.setLocalDescription(await answerer.createAnswer())
        assert "a=setup:passive" in answerer.localDescription.sdp
        await offerer.setRemoteDescription(answerer.localDescription)
        for _ in range(200):
            if offerer.connectionState == answerer.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        assert offerer.connectionState == answerer.connectionState == "connected"
        active = RTCPeerConnection()
        try:
            passive = offerer.localDescription.sdp.replace("a=setup:actpass", "a=setup:passive")
            await active.setRemoteDescription(type(offerer.localDescription)(sdp=passive, type="offer"))
            compat.prefer_dtls_server(active, passive)
            await active.setLocalDescription(await active.createAnswer())
            assert "a=setup:active" in active.localDescription.sdp
        finally:
            await active.close()
    finally:
        await offerer.close()
        await answerer.close()
