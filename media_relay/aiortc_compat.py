"""Every use of aiortc's and aioice's private internals, for the versions they were read from.

The relay forwards encoded RTP without aiortc's jitter buffer, decoder or encoder, so it reads and
replaces a few private attributes of aiortc's receivers, senders and transports, and patches two
module-level names at worker start.  Nothing else in the project touches a ``_``-name of aiortc or
aioice: when a new aiortc is pinned, this module is the one to re-read (against ``SUPPORTED``), and the
import fails with a clear message until it has been.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from importlib.metadata import version
from typing import Any

import aioice.ice
import aioice.stun
import aiortc.codecs
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pylibsrtp
from aiortc import clock
from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
from aiortc.rtcrtpreceiver import NackGenerator, RTCRtpReceiver, StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSourceInfo,
    RtpPacket,
    is_rtcp,
    pack_remb_fci,
)

from media_relay.ports import RangeLoop, parse_range
from media_relay.stats import STATS
from media_relay.timers import wheel

logger = logging.getLogger(__name__)

SUPPORTED = {"aiortc": "1.16.0", "aioice": "0.13.0"}
"""The exact versions whose internals this module was written against (requirements.txt pins them)."""


class UnsupportedVersionError(ImportError):
    """The installed aiortc or aioice is not the version this module was written for."""


def check_versions() -> None:
    """Raise :class:`UnsupportedVersionError` unless the installed versions are ``SUPPORTED``."""
    for package, expected in SUPPORTED.items():
        installed = version(package)
        if installed != expected:
            raise UnsupportedVersionError(
                f"media_relay.aiortc_compat supports {package}=={expected} only, found {package}=={installed}: "
                f"install {package}=={expected} (requirements.txt), or re-read this module's private accesses "
                f"against {package} {installed} and update SUPPORTED"
            )


check_versions()

RtpHandler = Callable[[RtpPacket, int], Awaitable[None]]
RtcpHandler = Callable[[AnyRtcpPacket], Awaitable[None]]
Route = tuple[Any, Callable[[bytes, Any], Any], Callable[[bytes], bytes], Any]
"""How one packet leaves: (candidate pair, ``sendto(data, addr)``, SRTP ``protect(data)``, remote address)."""
Binding = tuple[dict[int, Any], Route]
"""A route plus aioice's live map of nominated pairs: the route is stale once ``pairs.get(1)`` is another pair."""


# --- transceivers --------------------------------------------------------------------------------------------


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs negotiated on a transceiver (RTX included), in preference order; empty before negotiation."""
    return list(transceiver._codecs)


def media_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The negotiated codecs of a transceiver without RTX."""
    return [codec for codec in transceiver._codecs if not is_rtx(codec)]


def negotiated_extensions(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    """The header extensions negotiated on a transceiver: URI -> id (the remote offer's ids)."""
    return {extension.uri: extension.id for extension in transceiver._headerExtensions}


def accept_extensions(transceiver: RTCRtpTransceiver, offered: dict[str, int]) -> None:
    """Also negotiate these offered extensions (URI -> id), which aiortc does not know, on a transceiver.

    Called between setRemoteDescription and createAnswer: the answer then lists them, and the receiver's
    parser (configured when the transport connects) reads their values into ``RtpPacket.extensions``.
    """
    known = {extension.uri for extension in transceiver._headerExtensions}
    for uri, extension_id in offered.items():
        if uri not in known:
            transceiver._headerExtensions.append(RTCRtpHeaderExtensionParameters(id=extension_id, uri=uri))


def prefer_dtls_server(pc: Any, offer_sdp: str) -> None:
    """Answer as the DTLS server (``a=setup:passive``) when the offer leaves the choice (``actpass`` throughout).

    Call between setRemoteDescription and createAnswer.  aiortc would answer as the client; its OpenSSL then
    retransmits a lost flight after 1, 2, 4, 8 s, and three of the handshake's four flights wait on that timer.  As
    the server only its own first flight does: a browser's client retransmits on a faster timer, and OpenSSL answers
    a repeated Finished by resending its last flight at once.  80 Chromium publishes at 10 % loss each way took
    0.98 s at the median and up to 8.5 s with aiortc as the client, 0.32 s and up to 3.9 s as the server.
    """
    setups = {line.strip().split(":", 1)[1] for line in offer_sdp.splitlines() if line.startswith("a=setup:")}
    if setups != {"actpass"}:
        return  # the offerer chose (aiortc follows it), or said nothing
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport._role == "auto":
            transport._set_role("server")


# --- senders (the player side) -------------------------------------------------------------------------------


class SenderLink:
    """An aiortc RTCRtpSender whose RTP the relay writes itself, straight to the selected ICE pair's socket."""

    def __init__(self, sender: RTCRtpSender, transport: RTCDtlsTransport) -> None:
        self.sender = sender
        self.transport = transport
        self.ssrc: int = sender._ssrc
        """The SSRC of the media the sender announced in SDP."""
        self.rtx_ssrc: int = sender._rtx_ssrc
        """The SSRC of its retransmissions (RFC 4588)."""
        self.report: tuple[int, int, int, int] = (0, 0, 0, 0)
        """(NTP time, RTP timestamp, packets, octets) of the last frame sent, for the sender reports."""
        sender._relay_link = self  # type: ignore[attr-defined]

    def intercept_rtcp(self, handler: RtcpHandler) -> RtcpHandler:
        """Route the player's RTCP for this sender to ``handler``; returns aiortc's handler for the rest."""
        original: RtcpHandler = self.sender._handle_rtcp_packet
        self.sender._handle_rtcp_packet = handler  # type: ignore[method-assign, assignment]
        return original

    def set_report(self, ntp: int, rtp_timestamp: int, packet_count: int, octet_count: int) -> None:
        """What the sender reports (RTCP SR, :class:`PeerReports`) announce: the relay's sent figures.  One tuple
        stored: it is called for every frame (every audio packet) of every player."""
        self.report = (ntp, rtp_timestamp, packet_count, octet_count)

    @property
    def rtt(self) -> float | None:
        """The round-trip time to the player in seconds, from its receiver reports of the sender's SRs (None yet)."""
        rtt: float | None = getattr(self.sender, "_RTCRtpSender__rtt", None)
        return rtt

    def bind(self) -> Binding | None:
        """The socket route of the selected candidate pair, or None before DTLS is connected.

        Resolved once per selected pair instead of per packet: the hot path is one ``protect()`` and one
        ``sendto()`` on the raw socket (asyncio's datagram transport when there is none).
        """
        transport = self.transport
        if transport._state != State.CONNECTED:
            return None
        nominated: dict[int, Any] = transport.transport._connection._nominated
        pair = nominated.get(1)
        if pair is None:
            return None
        datagram = pair.protocol.transport
        raw = getattr(datagram, "_sock", None)
        sendto = raw.sendto if raw is not None else datagram.sendto
        return nominated, (pair, sendto, transport._tx_srtp.protect, pair.remote_addr)


# --- receivers (the publisher side) --------------------------------------------------------------------------

MAX_SSRCS = 32
"""Per-SSRC entries a receiver keeps: a publisher sends a handful (media, RTX, simulcast layers)."""


class SsrcTable(dict[int, Any]):
    """A per-SSRC map that forgets its oldest entry past ``MAX_SSRCS``: a publisher sending ever new SSRCs
    (each packet authenticated by its own SRTP) costs a bounded amount of memory."""

    def __setitem__(self, key: int, value: Any) -> None:
        if key not in self and len(self) >= MAX_SSRCS:
            del self[next(iter(self))]
        super().__setitem__(key, value)


def _bounded(receiver: RTCRtpReceiver, name: str) -> dict[int, Any]:
    """Replace one of aiortc's per-SSRC dictionaries of ``receiver`` by an :class:`SsrcTable` (aiortc uses it too)."""
    table = getattr(receiver, name)
    if not isinstance(table, SsrcTable):
        table = SsrcTable(table)
        setattr(receiver, name, table)
    return table


class BoundedNackGenerator(NackGenerator):
    """aiortc's NACK generator with bounded work per packet.

    aiortc's marks every sequence number between the highest seen and a new packet's as missing, one at a
    time: a publisher jumping 30,000 ahead costs 30,000 steps per packet and NACKs packets that never existed.
    A jump past the history aiortc tracks (RTP_HISTORY_SIZE) is a restart of the sequence: nothing is missing.
    """

    def add(self, packet: RtpPacket) -> bool:
        if self.max_seq is not None:
            ahead = (packet.sequence_number - self.max_seq) & 0xFFFF
            if RTP_HISTORY_SIZE < ahead < 0x8000:
                self.missing.clear()
                self.max_seq = packet.sequence_number
                return False
        return bool(super().add(packet))


class ReceiverLink:
    """An aiortc RTCRtpReceiver whose RTP the relay handles itself: the state feedback needs, and its RTCP outlet.

    The dictionaries are aiortc's own, filled by aiortc when the transceiver is negotiated.
    """

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.receiver = receiver
        prefix = "_RTCRtpReceiver__"
        self.codecs: dict[int, RTCRtpCodecParameters] = getattr(receiver, prefix + "codecs")
        """Negotiated codecs by payload type (RTX included)."""
        self.remote_streams: dict[int, StreamStatistics] = _bounded(receiver, prefix + "remote_streams")
        """Reception statistics by SSRC, read by aiortc's receiver reports."""
        self.rtx_ssrc: dict[int, int] = getattr(receiver, prefix + "rtx_ssrc")
        """RTX SSRC -> the SSRC of the media it repairs."""
        self.active_ssrc: dict[int, Any] = _bounded(receiver, prefix + "active_ssrc")
        """SSRC -> when it was last heard (aiortc's getSynchronizationSources)."""
        self.nack_generator: NackGenerator | None = None
        """The receiver's NackGenerator for video (bounded), None for audio."""
        self.on_nack: Callable[[], None] | None = None
        """Called after each NACK sent (e.g. to wake the retries of :mod:`media_relay.recovery`)."""
        if getattr(receiver, prefix + "nack_generator") is not None:
            self.nack_generator = BoundedNackGenerator()
            setattr(receiver, prefix + "nack_generator", self.nack_generator)

    @property
    def rtcp_ssrc(self) -> int | None:
        """The SSRC this side's RTCP is sent from; None until the peer connection assigns it."""
        ssrc: int | None = self.receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        return ssrc

    def take_over(self, handler: RtpHandler) -> None:
        """Give every RTP packet of this receiver to ``handler`` instead of aiortc's jitter buffer and decoder."""
        self.receiver._handle_rtp_packet = handler  # type: ignore[method-assign, assignment]

    def stop_decoder(self) -> None:
        """Stop the decoder thread aiortc started for this receiver (nothing feeds it once taken over)."""
        self.receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]

    async def send_rtcp(self, packet: AnyRtcpPacket) -> None:
        """Send one RTCP packet to the publisher (dropped when the transport is not connected)."""
        await self.receiver._send_rtcp(packet)

    async def send_nack(self, media_ssrc: int, lost: list[int]) -> None:
        """Ask the publisher to retransmit ``lost`` sequence numbers (RTCP generic NACK)."""
        rtcp_ssrc = self.rtcp_ssrc
        if rtcp_ssrc is not None:
            packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=rtcp_ssrc, media_ssrc=media_ssrc)
            packet.lost = lost
            await self.send_rtcp(packet)
            if self.on_nack is not None:
                self.on_nack()

    async def send_pli(self, media_ssrc: int) -> None:
        """Ask the publisher for a keyframe (RTCP PLI)."""
        rtcp_ssrc = self.rtcp_ssrc
        if rtcp_ssrc is not None:
            await self.send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=rtcp_ssrc, media_ssrc=media_ssrc))

    async def send_remb(self, bitrate: int, media_ssrcs: list[int]) -> None:
        """Tell the publisher the most it may send (RTCP REMB)."""
        rtcp_ssrc = self.rtcp_ssrc
        if rtcp_ssrc is not None:
            fci = pack_remb_fci(bitrate, media_ssrcs)
            await self.send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci))


def replace_receive_handler(receiver: RTCRtpReceiver, handler: RtpHandler) -> None:
    """Give a receiver's RTP packets to ``handler`` (no jitter buffer, no decoding), e.g. a benchmark's counter."""
    ReceiverLink(receiver).take_over(handler)


# --- the receive path: RTP and RTCP handled as their datagram arrives ----------------------------------------


def drive(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine to completion now when it never waits (a relay handler does not); a task finishes it if it
    does.  Saves the task, future and event-loop turn per packet that awaiting it from a task costs."""
    try:
        yielded = coroutine.send(None)
    except StopIteration:
        return
    except Exception:
        logger.exception("media packet handler failed")
        return
    task = asyncio.ensure_future(_resume(coroutine, yielded))
    task.add_done_callback(_log_handler_failure)


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, None]:
    """Continue a coroutine that :func:`drive` started and that waited on ``yielded``, inside a task."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:
            try:
                yielded = coroutine.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coroutine.send(sent)
            except StopIteration:
                return


def _log_handler_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("media packet handler failed", exc_info=task.exception())


class FastReceive:
    """SRTP and SRTCP of a connected DTLS transport, handled in the socket's read callback.

    aiortc queues every datagram for a task that reads the queue (a future, a task step and one more event-loop
    turn per packet) and aioice first tries to parse each as STUN.  Once DTLS is connected, RTP and RTCP
    datagrams skip both: unprotected, parsed and routed to the same receiver and sender handlers, at once.  DTLS
    and STUN keep aioice's and aiortc's path.
    """

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.dtls = dtls
        self.connection = dtls.transport._connection
        self._queue_put = self.connection.data_received
        self._hooked: set[int] = set()

    def install(self) -> None:
        """Take over the connection's data path (idempotent); call :meth:`hook_sockets` once gathered."""
        if getattr(self.connection, "_relay_fast_receive", None) is None:
            self.connection._relay_fast_receive = self  # type: ignore[attr-defined]
            self.connection.data_received = self.data_received  # type: ignore[method-assign]
        self.hook_sockets()

    def hook_sockets(self) -> None:
        """Let each host socket's datagrams that look like RTP/RTCP skip aioice's STUN parse."""
        for protocol in list(self.connection._protocols):
            if isinstance(protocol, aioice.ice.StunProtocol) and id(protocol) not in self._hooked:
                self._hooked.add(id(protocol))
                protocol.datagram_received = self._protocol_hook(protocol)  # type: ignore[method-assign, assignment]
                _drain_reads(protocol)

    def _protocol_hook(self, protocol: aioice.ice.StunProtocol) -> Callable[[bytes, Any], None]:
        original = protocol.datagram_received
        data_received = self.data_received

        def datagram_received(data: bytes, addr: Any) -> None:
            if data and 127 < data[0] < 192:
                data_received(data, protocol.local_candidate.component)
            else:
                original(data, addr)

        return datagram_received

    def data_received(self, data: bytes, component: int) -> None:
        """A datagram that is not STUN: RTP/RTCP handled now once SRTP is up; anything else to aiortc's queue."""
        dtls = self.dtls
        srtp = dtls._rx_srtp
        if srtp is None or not data or not 127 < data[0] < 192 or dtls._state != State.CONNECTED:
            self._queue_put(data, component)
            return
        try:
            if is_rtcp(data):
                self._rtcp(srtp.unprotect_rtcp(data))
            else:
                arrival_time_ms = clock.current_ms()
                self._rtp(srtp.unprotect(data), arrival_time_ms)
        except pylibsrtp.Error:
            pass  # as aiortc: a packet that does not authenticate is dropped
        except Exception:  # never into asyncio's read callback, which would close the socket
            logger.exception("media packet dropped")

    def _rtp(self, data: bytes, arrival_time_ms: int) -> None:
        dtls = self.dtls
        try:
            packet = RtpPacket.parse(data, dtls._rtp_header_extensions_map)
        except ValueError:
            return
        receiver = dtls._rtp_router.route_rtp(packet)
        if receiver is not None:
            drive(receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms))

    def _rtcp(self, data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        route = self.dtls._rtp_router.route_rtcp
        for packet in packets:
            for recipient in route(packet):
                drive(recipient._handle_rtcp_packet(packet))


READ_BATCH = 16
"""Datagrams a socket's read callback takes at most per event-loop turn."""


def _drain_reads(protocol: aioice.ice.StunProtocol) -> None:
    """Let the socket's read callback take up to ``READ_BATCH`` queued datagrams instead of one.

    asyncio reads one datagram per readiness event: the packets of a frame that arrive while the relay fans out
    the first one would each cost a turn of the loop (a select call and its bookkeeping).  Uses asyncio's
    datagram transport internals (CPython 3.11-3.13); left as is where they differ.
    """
    transport: Any = getattr(protocol, "transport", None)
    sock = getattr(transport, "_sock", None)
    read_one = getattr(transport, "_read_ready", None)
    if sock is None or read_one is None or not hasattr(transport, "_add_reader") or transport.is_closing():
        return

    def read_ready() -> None:
        read_one()
        for _ in range(READ_BATCH - 1):
            if transport._conn_lost:
                return
            try:
                data, addr = sock.recvfrom(transport.max_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            protocol.datagram_received(data, addr)

    transport._read_ready = read_ready  # what resume_reading registers again
    transport._add_reader(transport._sock_fd, read_ready)


def _dtls_transports(pc: Any) -> Iterator[RTCDtlsTransport]:
    """Each DTLS transport of a peer connection once (bundled transceivers share one)."""
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is not None and id(dtls) not in seen:
            seen.add(id(dtls))
            yield dtls


def fast_receive(pc: Any) -> None:
    """Handle the RTP and RTCP of a peer connection's DTLS transports as they arrive (:class:`FastReceive`).

    Call after setLocalDescription (the sockets are gathered then); again later is harmless."""
    for dtls in _dtls_transports(pc):
        existing = getattr(dtls.transport._connection, "_relay_fast_receive", None)
        (existing if existing is not None and existing.dtls is dtls else FastReceive(dtls)).install()


# --- shared timers: sender reports and ICE consent on the loop's timer wheel ---------------------------------

REPORT_INTERVAL = 1.0
"""Seconds between sender reports to a player (aiortc: 0.5-1.5 s at random; browsers report video each second)."""
SENDER_REPORT = struct.Struct("!BBHIQIII")
"""An RTCP SR without report blocks: V=2, PT=200, length 6, SSRC, NTP, RTP timestamp, packets, octets."""


class PeerReports:
    """The sender reports of one DTLS transport's senders: one compound RTCP packet (an SR per sender and their
    SDES) per interval, built with struct, protected and sent from the timer wheel."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.dtls = dtls
        self.senders: list[RTCRtpSender] = []
        self._sdes = b""
        self._job: Any = None

    def add(self, sender: RTCRtpSender) -> None:
        self.senders.append(sender)
        self._update()

    def remove(self, sender: RTCRtpSender) -> None:
        if sender in self.senders:
            self.senders.remove(sender)
        self._update()

    def _update(self) -> None:
        chunks = []
        for sender in self.senders:
            cname = sender._RTCRtpSender__cname  # type: ignore[attr-defined]
            if cname is not None:
                chunks.append(RtcpSourceInfo(ssrc=sender._ssrc, items=[(1, cname.encode("utf8"))]))
        self._sdes = bytes(RtcpSdesPacket(chunks=chunks)) if chunks else b""
        if self.senders and self._job is None:
            self._job = wheel().every(REPORT_INTERVAL, self.send)
        elif not self.senders and self._job is not None:
            self._job.cancel()
            self._job = None

    def send(self) -> None:
        """One compound packet: an SR per sender (what the relay last forwarded), then the SDES."""
        dtls = self.dtls
        if dtls._state != State.CONNECTED:
            return
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return
        now = time.time()
        parts = []
        for sender in self.senders:
            link: SenderLink | None = getattr(sender, "_relay_link", None)
            ntp, rtp_timestamp, packets, octets = link.report if link is not None else (0, 0, 0, 0)
            parts.append(
                SENDER_REPORT.pack(
                    0x80, 200, 6, sender._ssrc, ntp, rtp_timestamp, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF
                )
            )
            # What aiortc's own loop keeps to measure the round trip from the player's next receiver report.
            sender._RTCRtpSender__lsr = (ntp >> 16) & 0xFFFFFFFF  # type: ignore[attr-defined]
            sender._RTCRtpSender__lsr_time = now  # type: ignore[attr-defined]
        parts.append(self._sdes)
        try:
            pair.protocol.transport.sendto(dtls._tx_srtp.protect_rtcp(b"".join(parts)), pair.remote_addr)
        except (OSError, pylibsrtp.Error):
            pass  # a report lost, as on the wire; the next one follows


def share_report_timer(sender: RTCRtpSender) -> None:
    """Send this sender's RTCP sender reports from the loop's timer wheel, batched with its peer's other senders,
    instead of aiortc's task and timer per sender.  Call before the connection starts the sender; its BYE on stop
    is aiortc's."""

    async def run_rtcp() -> None:
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        dtls = sender.transport
        reports: PeerReports | None = getattr(dtls, "_relay_reports", None)
        if reports is None:
            reports = dtls._relay_reports = PeerReports(dtls)  # type: ignore[attr-defined]
        reports.add(sender)
        try:
            await asyncio.get_running_loop().create_future()  # until the sender stops
        except asyncio.CancelledError:
            pass
        finally:
            reports.remove(sender)
        await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
        sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]

    sender._run_rtcp = run_rtcp  # type: ignore[method-assign]


CONSENT_INTERVAL = float(aioice.ice.CONSENT_INTERVAL)
CONSENT_FAILURES = aioice.ice.CONSENT_FAILURES


class _ConsentCheck:
    """One consent request in flight: aioice's protocol hands it the response (as it would a Transaction)."""

    __slots__ = ("answered", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.answered = False

    def response_received(self, message: aioice.stun.Message, addr: Any) -> None:
        if message.message_class == aioice.stun.Class.RESPONSE and message.check_message_integrity(self.key):
            self.answered = True


class SharedConsent:
    """ICE consent freshness (RFC 7675) of one aioice connection on the loop's timer wheel.

    As aioice: a binding request every ``CONSENT_INTERVAL`` seconds; after ``CONSENT_FAILURES`` unanswered in a
    row the connection closes (consent expired).  A request counts as answered if its response comes before the
    next one is due, instead of within aioice's 0.5 s.  No task, future or retransmission timer per connection.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.failures = 0
        self._pending: list[tuple[Any, bytes, _ConsentCheck]] = []
        self._expired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._job = wheel().every(CONSENT_INTERVAL, self.check)

    def check(self) -> None:
        """Count the last round's answers, then ask again (or expire)."""
        connection = self.connection
        answered = True
        for protocol, transaction_id, check in self._pending:
            protocol.transactions.pop(transaction_id, None)
            answered = answered and check.answered
        if self._pending:
            self.failures = 0 if answered else self.failures + 1
        self._pending = []
        if self.failures >= CONSENT_FAILURES:
            self.stop()
            if not self._expired.done():
                self._expired.set_result(None)
            return
        key = connection.remote_password.encode("utf8")
        for pair in list(connection._nominated.values()):
            request = connection.build_request(pair, nominate=False)
            request.add_message_integrity(key)
            check = _ConsentCheck(key)
            pair.protocol.transactions[request.transaction_id] = check
            self._pending.append((pair.protocol, request.transaction_id, check))
            try:
                pair.protocol.send_stun(request, pair.remote_addr)
            except OSError:
                pass  # unanswered: counts as a failure next round

    def stop(self) -> None:
        self._job.cancel()
        for protocol, transaction_id, _ in self._pending:
            protocol.transactions.pop(transaction_id, None)
        self._pending = []

    async def run(self) -> None:
        """Stand in for aioice's ``query_consent`` task: wait for expiry (then close the connection as it does)."""
        try:
            await self._expired
        finally:
            self.stop()
        logger.info("ICE consent to send expired")
        self.connection._query_consent_task = None
        await self.connection.close()


def share_consent_timer(pc: Any) -> None:
    """Run the ICE consent checks of a peer connection's transports on the loop's timer wheel (:class:`SharedConsent`)
    instead of a task and timers per connection.  Call before the connection starts ICE."""
    for dtls in _dtls_transports(pc):
        connection: Any = dtls.transport._connection
        connection.query_consent = lambda connection=connection: SharedConsent(connection).run()


# --- process-wide patches, applied when a media worker starts ------------------------------------------------

_installed_ports: str | None = None


def install(udp_ports: str = "") -> None:
    """Apply the relay's patches to aiortc and aioice in this process (idempotent).

    - count every decoder and encoder aiortc creates (``STATS``), to show the relay never transcodes;
    - bind ICE host candidates within ``udp_ports`` (``"40000-40999"``; empty: any port).

    A media worker calls it when it starts; management commands and client-side peers never need it.
    """
    global _installed_ports
    _count_codecs()
    _opus_inband_fec()
    if udp_ports == _installed_ports:
        return
    bounds = parse_range(udp_ports)
    if bounds is None:
        aioice.ice.asyncio = asyncio  # type: ignore[attr-defined]
    else:
        low, high = bounds
        proxy = types.ModuleType("asyncio_port_range")
        proxy.__getattr__ = lambda name: getattr(asyncio, name)  # type: ignore[method-assign]
        proxy.get_running_loop = lambda: RangeLoop(asyncio.get_running_loop(), low, high)  # type: ignore[attr-defined]
        aioice.ice.asyncio = proxy  # type: ignore[attr-defined]
        logger.info("media UDP ports limited to %d-%d", low, high)
    _installed_ports = udp_ports


def _opus_inband_fec() -> None:
    """Answer and offer Opus with ``useinbandfec=1``: browsers then add in-band FEC to what they publish."""
    for codec in aiortc.codecs.CODECS["audio"]:
        if codec.mimeType.lower() == "audio/opus":
            codec.parameters.setdefault("minptime", 10)
            codec.parameters.setdefault("useinbandfec", 1)


def _count_codecs() -> None:
    if getattr(aiortc.rtcrtpreceiver.get_decoder, "counted", False):
        return
    original_decoder = aiortc.rtcrtpreceiver.get_decoder
    original_encoder = aiortc.rtcrtpsender.get_encoder

    def counting_decoder(codec: Any) -> Any:
        STATS.decoders_created += 1
        return original_decoder(codec)

    def counting_encoder(codec: Any) -> Any:
        STATS.encoders_created += 1
        return original_encoder(codec)

    counting_decoder.counted = True  # type: ignore[attr-defined]
    counting_encoder.counted = True  # type: ignore[attr-defined]
    aiortc.rtcrtpreceiver.get_decoder = counting_decoder  # type: ignore[assignment]
    aiortc.rtcrtpsender.get_encoder = counting_encoder  # type: ignore[assignment]


# --- ICE -----------------------------------------------------------------------------------------------------


def selected_candidate_types(transport: Any) -> tuple[str, str] | None:
    """(local, remote) candidate types of the pair an RTCIceTransport selected (``"host"``, ``"srflx"``,
    ``"relay"``...), or None before one is nominated; aiortc's stats do not report candidate pairs."""
    pair = transport._connection._nominated.get(1)
    if pair is None:
        return None
    return str(pair.local_candidate.type), str(pair.remote_candidate.type)
