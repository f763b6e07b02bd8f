"""Loss recovery on the publisher's leg: the relay keeps asking for packets it still misses.

aiortc's NACK generator (which the relay's Ingest feeds) NACKs a gap once, when it is first seen, and
only again when a newer gap appears.  A retransmission lost on the way would then be asked for again
only by chance; :func:`retry_nacks` asks for every packet still missing every ``MEDIA_NACK_RETRY_SECONDS``
until it arrives or falls out of the generator's window (128 packets); while nothing is missing it sleeps without
a timer.  Players get repaired packets
as soon as they reach the relay (they are forwarded like any other), and the relay answers the
players' own NACKs from each DownTrack's history.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from django.conf import settings

from media_relay.stats import STATS

if TYPE_CHECKING:
    from media_relay.forwarding import Ingest

logger = logging.getLogger(__name__)


async def retry_nacks(ingest: Ingest, interval: float | None = None) -> None:
    """Run until cancelled: NACK the publisher again for what ``ingest`` still misses.

    Every ``interval`` seconds (default MEDIA_NACK_RETRY_SECONDS; 0 turns retries off).
    """
    if interval is None:
        interval = settings.MEDIA_NACK_RETRY_SECONDS
    if ingest.kind != "video" or interval <= 0:  # audio: aiortc keeps no NACK state
        return
    nacked = asyncio.Event()
    ingest.link.on_nack = nacked.set
    try:
        while True:
            if not any(generator.missing for _, generator in ingest.nack_state()):
                nacked.clear()
                await nacked.wait()  # nothing missing: no timer until the next gap is NACKed
            await asyncio.sleep(interval)
            for ssrc, generator in ingest.nack_state():  # each simulcast layer has its own
                if generator.missing:
                    try:
                        STATS.nacks_sent += 1
                        await ingest.link.send_nack(ssrc, sorted(generator.missing))
                    except ConnectionError:
                        return
    finally:
        ingest.link.on_nack = None
