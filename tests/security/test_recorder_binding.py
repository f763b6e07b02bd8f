"""Finding 5 of issue 11: the recorder listens on every interface, in a range overlapping the media range.

A real ffmpeg writer (media_relay.recording.writer.RtpFileWriter) is started and
its UDP sockets are looked up in /proc/net/udp: no foreign traffic is needed to
see that a socket bound to 0.0.0.0 would accept RTP and RTCP BYE from outside.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings

from media_relay.recording.writer import RtpFileWriter, TrackSpec

#: The media range docs/deployment.md tells operators to open in their firewall.
DOCUMENTED_MEDIA_RANGE = (40000, 40100)


def udp_sockets() -> dict[int, set[str]]:
    """Local UDP port -> the local addresses (hex, as the kernel writes them) bound to it (IPv4 and IPv6)."""
    bound: dict[int, set[str]] = {}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local = line.split()[1]
            address, port = local.rsplit(":", 1)
            bound.setdefault(int(port, 16), set()).add(address)
    return bound


IPV4_LOOPBACK = "0100007F"  # 127.0.0.1 in /proc/net/udp (little-endian hex)


async def test_writer_sockets_are_bound_to_loopback_only(tmp_path: Path) -> None:
    """Finding 5: every UDP port of a running ffmpeg writer (RTP and RTCP of each track) is bound to 127.0.0.1,
    never to 0.0.0.0 or ::, so nobody outside can end or feed a recording."""
    tracks = [
        TrackSpec("video", 96, "VP8", 90000),
        TrackSpec("audio", 111, "opus", 48000, channels=2),
    ]
    writer = RtpFileWriter(tmp_path / "stream.webm", tracks)
    await writer.start()
    try:
        bound = udp_sockets()
        ports = [port for track in tracks for port in (track.port, track.port + 1)]
        assert all(port in bound for port in ports[::2]), (ports, "the writer listens")
        exposed = {port: bound.get(port, set()) - {IPV4_LOOPBACK} for port in ports}
        assert not any(exposed.values()), f"writer ports bound beyond 127.0.0.1: {exposed}"
    finally:
        writer.request_stop()
        await asyncio.wait_for(writer.wait(), 20)
        writer.close_socket()


def test_the_default_recorder_range_is_outside_the_media_range(settings: Any) -> None:
    """Finding 5: RECORDING_UDP_PORTS' default does not overlap the media range the docs tell operators to open."""
    low, high = django_settings.RECORDING_UDP_PORTS
    media_low, media_high = DOCUMENTED_MEDIA_RANGE
    assert high < media_low or low > media_high, (low, high)
