"""The forward path's native half (media_relay.fastpath, built by scripts/build_fastpath.py): the same SRTP bytes
as pylibsrtp for the same input and key, one SRTP state shared with aiortc's session, every copy delivered, and
the pure-Python fallback when it is off or cannot take a route."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import Iterator

import pylibsrtp
import pytest
from pylibsrtp import Policy, Session

from media_relay import fastpath, forwarding
from media_relay.aiortc_compat import Binding
from media_relay.forwarding import DownTrack
from tests.test_forwarding import (
    FRAME_STARTS,
    OPUS,
    VP8,
    CapturedSenderLink,
    Wire,
    assert_contiguous,
    ingest,
    publish,
    rtp,
)

PROFILES = {
    Policy.SRTP_PROFILE_AES128_CM_SHA1_80: 30,
    Policy.SRTP_PROFILE_AEAD_AES_128_GCM: 28,
    Policy.SRTP_PROFILE_AEAD_AES_256_GCM: 44,
}
"""The profiles aiortc negotiates and their master key + salt lengths."""


@pytest.fixture(autouse=True)
def native() -> Iterator[None]:
    """The native half in use for these tests (fails under CI, skips elsewhere, when it is not built)."""
    if not fastpath.built():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the native fast path must be built under CI: {fastpath.status()}")
        pytest.skip(f"native fast path: {fastpath.status()}")
    fastpath.use(True)
    yield
    fastpath.use(not fastpath.disabled_by_environment())


def tx_session(key: bytes, profile: int = Policy.SRTP_PROFILE_AES128_CM_SHA1_80) -> Session:
    """An outbound session configured as aiortc's DTLS transport configures its own."""
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def rx_session(key: bytes, profile: int = Policy.SRTP_PROFILE_AES128_CM_SHA1_80) -> Session:
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    policy.window_size = 1024
    return Session(policy)


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def packet(sequence: int, size: int = 1100, ssrc: int = 0x01020304, extended: bool = False) -> bytes:
    """A plain RTP packet (with a one-word abs-send-time extension when ``extended``)."""
    if extended:
        header = struct.pack("!BBHIIHHI", 0x90, 96, sequence & 0xFFFF, sequence * 3000, ssrc, 0xBEDE, 1, 0x32ABCDEF)
    else:
        header = struct.pack("!BBHII", 0x80, 96, sequence & 0xFFFF, sequence * 3000, ssrc)
    return header + bytes((sequence + index) & 0xFF for index in range(size))


def drain(sock: socket.socket) -> list[bytes]:
    """What arrived (loopback delivers before ``sendto`` returns)."""
    received = []
    while True:
        try:
            received.append(sock.recv(4096))
        except BlockingIOError:
            return received


@pytest.mark.parametrize("profile", list(PROFILES))
def test_native_protect_equals_pylibsrtp_byte_for_byte(profile: int) -> None:
    """Two sessions with one key: pylibsrtp's protect and the native one give the same packets, across a sequence
    wrap (the rollover counter), with a header extension, for a resent packet and for tiny and large payloads."""
    key = os.urandom(PROFILES[profile])
    python, native_session = tx_session(key, profile), tx_session(key, profile)
    sender = udp_socket()
    try:
        route = fastpath.route(sender.sendto, native_session.protect, ("127.0.0.1", 9))
        assert route is not None
        sequences = [*range(65530, 65546), 65545, 65544]
        inputs = [packet(seq, size=1 + 97 * (seq % 13), extended=bool(seq & 1)) for seq in sequences]
        inputs.append(packet(70000, size=1200))
        for data in inputs:
            assert fastpath.protect(route, data) == python.protect(data)
    finally:
        sender.close()


def test_one_srtp_state_shared_with_the_python_path() -> None:
    """Packets of one SSRC protected alternately by the native half and by pylibsrtp on the same session (as RTP
    and aiortc's own use of the transport's session do) all authenticate at the receiver, across a wrap."""
    key = os.urandom(30)
    session = tx_session(key)
    receiver = rx_session(key)
    sender, sink = udp_socket(), udp_socket()
    try:
        route = fastpath.route(sender.sendto, session.protect, sink.getsockname())
        assert route is not None
        for sequence in range(65500, 65600):
            data = packet(sequence, size=200)
            if sequence & 1:
                assert fastpath.send(route, data) > len(data)
            else:
                sender.sendto(session.protect(data), sink.getsockname())
        received = drain(sink)
        assert [receiver.unprotect(datagram) for datagram in received] == [
            packet(sequence, size=200) for sequence in range(65500, 65600)
        ]
    finally:
        sender.close()
        sink.close()


def test_send_many_delivers_every_copy() -> None:
    """One call sends K copies, each protected with its own player's session and socket: every copy arrives."""
    players = 20
    keys = [os.urandom(30) for _ in range(players)]
    senders = [udp_socket() for _ in range(players)]
    sinks = [udp_socket() for _ in range(players)]
    try:
        routes = []
        for key, sender, sink in zip(keys, senders, sinks, strict=True):
            route = fastpath.route(sender.sendto, tx_session(key).protect, sink.getsockname())
            assert route is not None
            routes.append(route)
        for sequence in range(10):
            copies = [packet(sequence, ssrc=1000 + index) for index in range(players)]
            results = fastpath.send_many(routes, copies)
            assert all(result > len(copy) for result, copy in zip(results, copies, strict=True)), results
        for index, (key, sink) in enumerate(zip(keys, sinks, strict=True)):
            receiver = rx_session(key)
            assert [receiver.unprotect(data) for data in drain(sink)] == [
                packet(sequence, ssrc=1000 + index) for sequence in range(10)
            ]
    finally:
        for sock in senders + sinks:
            sock.close()


def test_a_failed_send_is_reported_not_raised() -> None:
    """A closed socket: a negative errno that is not a drop, so the DownTrack binds again."""
    sender, sink = udp_socket(), udp_socket()
    route = fastpath.route(sender.sendto, tx_session(os.urandom(30)).protect, sink.getsockname())
    assert route is not None
    route[0].fd = 1 << 20  # no such descriptor
    try:
        result = fastpath.send(route, packet(1))
        assert result < 0 and result not in fastpath.DROPPED
        assert fastpath.send(route, b"short") < 0  # not even an RTP header
    finally:
        sender.close()
        sink.close()


def forward_through(wire: Wire, seed: int) -> list[bytes]:
    """What a player's wire carries when one DownTrack forwards a short VP8 stream (random offsets from ``seed``)."""
    link = CapturedSenderLink("video")
    link.wire = wire
    random.seed(seed)
    track = DownTrack("video", link, {96: 100}, None, lambda: None, lambda _layer: None, extension_id=3)
    track.ssrc = 0x0A0B0C0D  # aiortc draws the sender's SSRC from its own source
    frames = [bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + bytes(900)] + [bytes([0x10, 0x01]) + bytes(700)] * 5
    for index, payload in enumerate(frames):
        track.forward(96, 1, 40000 + index, 9000 * index, payload, index == 0, 0, extension=0x123456)
    assert (track._native is not None) == fastpath.enabled()  # the route it took
    return drain(wire.receiver)


async def test_a_downtrack_sends_the_same_bytes_on_either_path() -> None:
    """The same DownTrack input and key give the same SRTP datagrams with the native half and without it."""
    key = os.urandom(30)
    native_wire, python_wire = Wire(), Wire()
    for wire in (native_wire, python_wire):
        wire.key = key
        wire.tx = tx_session(key)
    native_datagrams = forward_through(native_wire, seed=7)
    fastpath.use(False)
    python_datagrams = forward_through(python_wire, seed=7)
    assert len(native_datagrams) == 6
    assert native_datagrams == python_datagrams
    await asyncio.sleep(0)


def test_routes_the_native_half_does_not_take() -> None:
    """Anything but a raw socket's sendto and a pylibsrtp session's protect, an unparsable address, or the fast
    path turned off: the pure-Python route is kept."""
    sender = udp_socket()
    session = tx_session(os.urandom(30))
    try:
        assert fastpath.route(lambda data, addr: None, session.protect, ("127.0.0.1", 9)) is None
        assert fastpath.route(sender.sendto, lambda data: data, ("127.0.0.1", 9)) is None
        assert fastpath.route(sender.sendto, session.protect, ("fe80::1%nope", 9)) is None
        assert fastpath.route(sender.sendto, session.protect, ("127.0.0.1", 9)) is not None
        fastpath.use(False)
        assert not fastpath.enabled()
        assert fastpath.route(sender.sendto, session.protect, ("127.0.0.1", 9)) is None
    finally:
        sender.close()


def test_environment_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, off in (("off", True), ("0", True), ("OFF", True), ("on", False), ("", False)):
        monkeypatch.setenv("MEDIA_FASTPATH", value)
        assert fastpath.disabled_by_environment() is off


def test_pylibsrtp_errors_stay_errors() -> None:
    """A packet libsrtp refuses (here: a replay on a session without repeats allowed) is refused natively too."""
    policy = Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
    session = Session(policy)
    sender = udp_socket()
    try:
        route = fastpath.route(sender.sendto, session.protect, ("127.0.0.1", 9))
        assert route is not None
        fastpath.protect(route, packet(5))
        with pytest.raises(OSError):
            fastpath.protect(route, packet(5))
        with pytest.raises(pylibsrtp.Error):
            session.protect(packet(5))
    finally:
        sender.close()


async def fan_out_through(wires: list[Wire], seed: int, kind: str = "video") -> tuple[list[list[bytes]], list[bool]]:
    """The RTP each player's wire delivers when an Ingest fans a short stream out to one DownTrack per wire (random
    offsets from ``seed``), with a mute and unmute in the middle and a NACK answered at the end; and whether each
    track was in the C fan-out before the mute."""
    codec = VP8 if kind == "video" else OPUS
    target, _ = ingest(kind, [codec])
    random.seed(seed)
    tracks = []
    for index, wire in enumerate(wires):
        link = CapturedSenderLink(kind)
        link.wire = wire
        track = DownTrack(kind, link, {codec.payloadType: 100}, None, lambda: None, lambda _layer: None, 3)
        track.ssrc = 0x0A0B0C00 + index
        target.add(track)
        tracks.append(track)
    key, inter = FRAME_STARTS["VP8"] if kind == "video" else (b"\x01", b"\x02")
    packets = [
        rtp(codec.payloadType, 65500 + n, 3000 * n, (key if n in (0, 30) else inter) + bytes(300 + n), 1)
        for n in range(50)
    ]
    await publish(target, packets[:20])
    fast = [track.fast for track in tracks]
    target.set_enabled(False)
    await publish(target, packets[20:25])
    target.set_enabled(True)
    await publish(target, packets[25:])
    for track in tracks:
        if track.fast:
            track.sync_fast()  # its last sequence, from the C track
        track.retransmit((track.last_sequence - 35) & 0xFFFF)  # sent before the mute
    received = [wire.receive() for wire in wires]
    if kind == "video":  # abs-send-time: the clock at each packet's arrival
        received = [[data[:16] + data[20:] for data in packets] for packets in received]
    return received, fast


@pytest.mark.parametrize("kind", ["video", "audio"])
async def test_the_c_fan_out_sends_what_python_sends(kind: str) -> None:
    """An Ingest with three players: the C fan-out (each player's header rewritten, protected and sent in C)
    delivers the same RTP as the Python path (SRTP verified by each player's session), through a mute, an unmute
    and a NACK answered from the C history."""
    keys = [os.urandom(30) for _ in range(3)]

    def wires() -> list[Wire]:
        made = []
        for key in keys:
            wire = Wire()
            wire.key, wire.tx = key, tx_session(key)
            made.append(wire)
        return made

    native_datagrams, native_fast = await fan_out_through(wires(), seed=11, kind=kind)
    fastpath.use(False)
    python_datagrams, python_fast = await fan_out_through(wires(), seed=11, kind=kind)
    assert native_fast == [True] * 3 and python_fast == [False] * 3
    # 50 - 5 muted (video: and 5 more until the next keyframe) + 1 resent
    assert [len(datagrams) for datagrams in native_datagrams] == [41 if kind == "video" else 46] * 3
    assert native_datagrams == python_datagrams


async def test_a_player_leaves_the_c_fan_out_on_a_failed_send_or_a_new_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed send or another selected ICE pair takes the player back to Python at the next read-back, which
    binds again and hands it to C again: the stream goes on without a gap."""
    monkeypatch.setattr(forwarding, "FAST_SYNC", 0.0)
    target, _ = ingest("video", [VP8])
    link = CapturedSenderLink("video")
    nominated: dict[int, object] = {}

    def bind() -> Binding:
        wire = link.wire
        assert wire is not None
        nominated[1] = object()
        return nominated, (nominated[1], wire.sender.sendto, wire.tx.protect, wire.address)

    monkeypatch.setattr(link, "bind", bind)
    track = DownTrack("video", link, {96: 100}, None, lambda: None, lambda _layer: None)
    target.add(track)
    key, inter = FRAME_STARTS["VP8"]
    await publish(target, [rtp(96, n, 3000 * n, (key if n == 0 else inter) + bytes(200), 1) for n in range(5)])
    assert track.fast
    first = track.fast_track
    first[0].failed = 1
    await publish(target, [rtp(96, n, 3000 * n, inter + bytes(200), 1) for n in range(5, 10)])
    assert track.fast and track.fast_track is not first  # left, bound again, back in C
    second = track.fast_track
    nominated[1] = object()  # ICE selected another pair
    await publish(target, [rtp(96, n, 3000 * n, inter + bytes(200), 1) for n in range(10, 15)])
    assert track.fast and track.fast_track is not second
    received = link.packets()
    assert len(received) == 15
    assert_contiguous(received)
    assert track.packets_sent == 15
