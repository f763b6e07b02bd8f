"""Finding 8 of issue 11: in-memory maps keyed by client input that never shrink.

A media worker (real in-memory channel layer) is fed the ``ice`` and ``stop``
messages a hostile client's commands become, with ids that name nothing; a
publisher's ingest (a real aiortc receiver) is fed RTP with ever new SSRCs.
Design under test: unknown ids are answered with an error and create no state;
per-SSRC state is bounded.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from channels.layers import get_channel_layer

from media_relay import contract
from media_relay.aiortc_compat import ReceiverLink
from media_relay.forwarding import Ingest
from media_relay.worker import MediaWorker

pytestmark = pytest.mark.django_db(transaction=True)

#: Per-SSRC entries an ingest may hold (a publisher sends a handful: media, RTX, simulcast layers).
SSRC_BOUND = 64


async def test_unknown_ice_and_stop_ids_create_no_worker_state() -> None:
    """Finding 8: 300 `ice` and 300 `stop` for ids that name no peer connection: each answered with
    play_not_found, and the worker keeps no lock (or anything else) per id."""
    layer = get_channel_layer()
    worker = MediaWorker("hostile-test")
    worker.channel = await layer.new_channel()
    reply = await layer.new_channel()
    for n in range(300):
        worker._spawn(
            contract.IceCommand(
                type="media.ice", placement=1, participant_id=1, pc_id=uuid.uuid4().hex, candidate=None,
                sdp_mid=None, sdp_mline_index=None, reply_channel=reply, rid=f"i{n}",
            )
        )
        worker._spawn(
            contract.StopCommand(
                type="media.stop", placement=1, play_id=uuid.uuid4().hex, reply_channel=reply, rid=f"s{n}"
            )
        )
    await asyncio.wait_for(asyncio.gather(*list(worker._tasks)), 30)
    first = await asyncio.wait_for(layer.receive(reply), 5)
    assert first["event"]["code"] == "play_not_found", first
    assert len(worker._locks) == 0, f"{len(worker._locks)} locks left for ids that named nothing"
    await worker.shutdown()


def vp8_receiver() -> ReceiverLink:
    """The link of a real aiortc video receiver that negotiated VP8 (payload type 96); never connected."""
    gatherer = RTCIceGatherer()
    transport = RTCDtlsTransport(RTCIceTransport(gatherer), [RTCCertificate.generateCertificate()])
    link = ReceiverLink(RTCRtpReceiver("video", transport))
    link.codecs[96] = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    return link


async def test_ever_new_ssrcs_do_not_grow_ingest_state() -> None:
    """Finding 8: a publisher sending 5,000 packets each with a new SSRC leaves at most a bounded number of
    per-SSRC entries (statistics, activity) in its ingest."""
    link = vp8_receiver()
    ingest = Ingest("video", link, on_first_packet=lambda _ingest: None, pli_interval=1.0)
    for n in range(5000):
        packet = RtpPacket(payload_type=96, sequence_number=n % 65536, timestamp=n * 3000, ssrc=0x1000 + n)
        packet.payload = b"\x90\x80\x00" + bytes(20)
        await ingest.handle_rtp(packet, n)
    sizes = {"remote streams": len(ingest._remote_streams), "active": len(ingest._active_ssrc)}
    assert all(size <= SSRC_BOUND for size in sizes.values()), sizes
    await link.receiver.stop()
