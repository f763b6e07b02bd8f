"""media_relay.aiortc_compat: the version guard and the worker-start patches."""

from __future__ import annotations

import asyncio
import socket
import time
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


# --- the receive path and the shared timers, on two real peer connections -----------------------------------


async def _connected_pair(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, Any, Any]:
    """An offerer sending audio (aiortc's silence) to an answerer that runs the relay's receive path and timers
    and sends back through a SenderLink; returns (offerer, answerer, the answerer's transceiver, link)."""
    from aiortc import AudioStreamTrack, RTCPeerConnection

    from media_relay.peers import IdleTrack

    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    offerer.addTransceiver(AudioStreamTrack(), direction="sendrecv")
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    (transceiver,) = answerer.getTransceivers()
    answerer.addTrack(IdleTrack("audio"))
    compat.share_report_timer(transceiver.sender)
    await answerer.setLocalDescription(await answerer.createAnswer())
    compat.fast_receive(answerer)
    compat.share_consent_timer(answerer)
    await offerer.setRemoteDescription(answerer.localDescription)
    for _ in range(200):
        if offerer.connectionState == answerer.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    assert offerer.connectionState == answerer.connectionState == "connected"
    return offerer, answerer, transceiver, compat.SenderLink(transceiver.sender, transceiver.sender.transport)


async def test_rtp_and_rtcp_skip_the_queue_and_reports_give_the_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    """The publisher's RTP reaches the receiver's handler from the socket's read callback (aiortc's queue-reading
    task never sees it); the shared timer's sender reports reach the player, whose receiver reports come back the
    same way and give the sender its round-trip time."""
    from aiortc.rtp import RtpPacket

    offerer, answerer, transceiver, link = await _connected_pair(monkeypatch)
    try:
        received: list[RtpPacket] = []

        async def count(packet: RtpPacket, arrival_time_ms: int) -> None:
            received.append(packet)

        compat.replace_receive_handler(transceiver.receiver, count)
        dtls = transceiver.receiver.transport
        queued: list[bytes] = []
        dtls._handle_rtp_data = lambda data, arrival_time_ms: queued.append(data)  # aiortc's queue path
        dtls._handle_rtcp_data = lambda data: queued.append(data)
        binding = link.bind()
        assert binding is not None
        _, (_, sendto, protect, addr) = binding
        payload_type = compat.media_codecs(transceiver)[0].payloadType
        for sequence in range(150):  # 3 s of 20 ms silence frames, with sender reports announcing them
            packet = RtpPacket(payload_type=payload_type, sequence_number=sequence, timestamp=960 * sequence,
                               ssrc=link.ssrc, payload=b"\xf8\xff\xfe")
            sendto(protect(packet.serialize()), addr)
            link.set_report((int(time.time()) + 2208988800) << 32, 960 * sequence, sequence + 1, 3 * (sequence + 1))
            await asyncio.sleep(0.02)
            if link.rtt is not None and len(received) > 20:
                break
        assert len(received) > 20 and not queued
        # A burst from the publisher's side, taken in batches by the relay socket's read callback, in order.
        offered = offerer.getTransceivers()[0].sender
        publisher = compat.SenderLink(offered, offered.transport)
        publisher_binding = publisher.bind()
        assert publisher_binding is not None
        _, (_, publisher_sendto, publisher_protect, publisher_addr) = publisher_binding
        marked = b"\xf8\xff\xfe\x42"
        for sequence in range(1000, 1040):
            packet = RtpPacket(payload_type=payload_type, sequence_number=sequence, timestamp=960 * sequence,
                               ssrc=0x51A7E, payload=marked)  # a new SSRC: its own replay window
            publisher_sendto(publisher_protect(packet.serialize()), publisher_addr)

        def burst() -> list[int]:
            return [p.sequence_number for p in received if p.payload == marked]

        for _ in range(100):
            if len(burst()) >= 40:
                break
            await asyncio.sleep(0.01)
        assert burst() == list(range(1000, 1040)) and not queued
        assert link.rtt is not None and 0 <= link.rtt < 1.0
        stats = await offerer.getTransceivers()[0].receiver.getStats()
        remote = [s for s in stats.values() if s.type == "remote-outbound-rtp"]
        assert remote and remote[0].packetsSent > 0
    finally:
        await offerer.close()
        await answerer.close()


async def test_consent_on_the_shared_timer_expires_a_silent_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer that stops answering ICE consent checks is closed after CONSENT_FAILURES unanswered ones (aioice's
    rule, on the timer wheel); while it answers, the connection stays up."""
    monkeypatch.setattr(compat, "CONSENT_INTERVAL", 0.5)
    monkeypatch.setattr(compat, "CONSENT_FAILURES", 2)
    offerer, answerer, _, _ = await _connected_pair(monkeypatch)
    try:
        await asyncio.sleep(1.5)  # three rounds answered
        assert answerer.iceConnectionState == "completed"
        for transceiver in offerer.getTransceivers():
            for protocol in transceiver.receiver.transport.transport._connection._protocols:
                protocol.datagram_received = lambda data, addr: None  # deaf: checks go unanswered
        for _ in range(100):
            if answerer.iceConnectionState in ("closed", "failed"):
                break
            await asyncio.sleep(0.05)
        assert answerer.iceConnectionState in ("closed", "failed")
    finally:
        await offerer.close()
        await answerer.close()
