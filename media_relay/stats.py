"""Counters of the relay: what it forwarded, what it holds open, and proof it never transcodes.

aiortc creates a decoder for every received track and an encoder for every
sent one unless the relay bypasses them; wrapping its factories counts every
codec instance this process creates, so tests and /media/stats can show zero.
Live workers register here (:data:`LIVE_WORKERS`) so that this module reads
their figures without importing the worker.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class RelayStats:
    """Process-wide relay counters."""

    decoders_created: int = 0
    encoders_created: int = 0
    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    publications_opened: int = 0
    playbacks_opened: int = 0
    packets_received: int = 0
    """RTP packets with payload received from publishers (RTX unwrapped, padding left out)."""
    bytes_received: int = 0
    nacks_sent: int = 0
    """RTCP NACKs sent to publishers for missing packets."""
    nacks_received: int = 0
    """RTCP NACKs received from players (answered from the history)."""
    plis_sent: int = 0
    """Keyframe requests (PLI) sent to publishers."""
    plis_received: int = 0
    """Keyframe requests (PLI/FIR) received from players."""


@dataclass(frozen=True)
class WorkerFigures:
    """What one media worker holds open right now."""

    publications: int = 0
    playbacks: int = 0
    packets_lost: int = 0
    """RTP packets lost from publishers (live publications, RTX left out)."""
    packets_expected: int = 0


@dataclass(frozen=True)
class PlacementFigures:
    """What one media worker relays for one placement key (a room, to the layer above) right now."""

    publications: int = 0
    playbacks: int = 0
    bitrate_in: int = 0
    """Bits per second received from the placement's publishers over the last heartbeat interval."""
    packets_lost: int = 0
    """RTP packets lost from the placement's live publications (RTX left out)."""
    packets_expected: int = 0


class LiveWorker(Protocol):
    """A media worker as the figures see it."""

    worker_id: str

    def figures(self) -> WorkerFigures: ...

    def placement_figures(self) -> dict[int, PlacementFigures]: ...


@dataclass(frozen=True)
class RelayFigures:
    """The relay figures of this process: counters since start plus what is open now."""

    decoders_created: int
    encoders_created: int
    packets_forwarded: int
    bytes_forwarded: int
    publications_opened: int
    playbacks_opened: int
    packets_received: int
    bytes_received: int
    nacks_sent: int
    nacks_received: int
    plis_sent: int
    plis_received: int
    peer_connections: int
    publications: int
    playbacks: int
    packets_lost: int
    packets_expected: int
    udp_sockets: int
    asyncio_tasks: int


STATS = RelayStats()
PEER_CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()
LIVE_WORKERS: weakref.WeakSet[LiveWorker] = weakref.WeakSet()
"""The media workers running in this process (each adds itself when it starts)."""


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


def relay_figures() -> RelayFigures:
    """Counters plus what this process's workers and peer connections hold open."""
    workers = [worker.figures() for worker in list(LIVE_WORKERS)]
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        tasks = -1
    return RelayFigures(
        decoders_created=STATS.decoders_created,
        encoders_created=STATS.encoders_created,
        packets_forwarded=STATS.packets_forwarded,
        bytes_forwarded=STATS.bytes_forwarded,
        publications_opened=STATS.publications_opened,
        playbacks_opened=STATS.playbacks_opened,
        packets_received=STATS.packets_received,
        bytes_received=STATS.bytes_received,
        nacks_sent=STATS.nacks_sent,
        nacks_received=STATS.nacks_received,
        plis_sent=STATS.plis_sent,
        plis_received=STATS.plis_received,
        peer_connections=sum(1 for pc in list(PEER_CONNECTIONS) if pc.connectionState != "closed"),
        publications=sum(w.publications for w in workers),
        playbacks=sum(w.playbacks for w in workers),
        packets_lost=sum(w.packets_lost for w in workers),
        packets_expected=sum(w.packets_expected for w in workers),
        udp_sockets=open_udp_sockets(),
        asyncio_tasks=tasks,
    )


def local_placement_figures(placement: int) -> dict[str, PlacementFigures]:
    """What this process's media workers relay for ``placement``, by worker id (workers with none left out)."""
    found = {}
    for worker in list(LIVE_WORKERS):
        figures = worker.placement_figures().get(placement)
        if figures is not None:
            found[worker.worker_id] = figures
    return found
