"""Counters of the relay: what it forwarded, what it holds open, and proof it never transcodes.

aiortc creates a decoder for every received track and an encoder for every
sent one unless the relay bypasses them; wrapping its factories counts every
codec instance this process creates, so tests and /media/stats can show zero.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class RelayStats:
    """Process-wide relay counters."""

    decoders_created: int = 0
    encoders_created: int = 0
    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    publications_opened: int = 0
    playbacks_opened: int = 0


STATS = RelayStats()
PEER_CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()


def install_codec_counters() -> None:
    """Count every aiortc codec instance this process creates (idempotent)."""
    import aiortc.rtcrtpreceiver as receiver_module
    import aiortc.rtcrtpsender as sender_module

    if getattr(receiver_module.get_decoder, "_counted", False):
        return
    original_decoder = receiver_module.get_decoder
    original_encoder = sender_module.get_encoder

    def counting_decoder(codec: Any) -> Any:
        STATS.decoders_created += 1
        return original_decoder(codec)

    def counting_encoder(codec: Any) -> Any:
        STATS.encoders_created += 1
        return original_encoder(codec)

    counting_decoder._counted = True  # type: ignore[attr-defined]
    counting_encoder._counted = True  # type: ignore[attr-defined]
    receiver_module.get_decoder = counting_decoder  # type: ignore[assignment]
    sender_module.get_encoder = counting_encoder  # type: ignore[assignment]


def open_udp_sockets() -> int:
    """UDP sockets this process holds open (Linux /proc), or -1 where unknown."""
    try:
        inodes = set()
        for name in ("/proc/self/net/udp", "/proc/self/net/udp6"):
            with open(name) as table:
                for line in table.readlines()[1:]:
                    inodes.add(line.split()[9])
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                count += 1
        return count
    except OSError:
        return -1


def snapshot() -> dict[str, Any]:
    """Counters plus what is open right now."""
    from media_relay.worker import all_inprocess_workers

    workers = all_inprocess_workers()
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        tasks = -1
    return {
        **asdict(STATS),
        "peer_connections": sum(1 for pc in PEER_CONNECTIONS if pc.connectionState != "closed"),
        "publications": sum(len(w.publications) for w in workers),
        "playbacks": sum(len(w.playbacks) for w in workers),
        "udp_sockets": open_udp_sockets(),
        "asyncio_tasks": tasks,
    }
