"""Clean up after a media worker that died: its placements are unpinned and the port hears WorkerGone.

Any process may notice a dead worker (a silent heartbeat); the registry's claim
makes exactly one of them do the work.  The layer above fails the lost streams;
clients then publish again and land on a live worker.  The dead worker's
playbacks are reported FAILED to their players, who may play again.
"""

from __future__ import annotations

import logging

from media_relay.contract import PlaybackState, PlaybackStatus, WorkerGone
from media_relay.port import media_events
from media_relay.registry import registry

logger = logging.getLogger(__name__)

PLAYER_WORKER_GONE = "the media worker serving this playback stopped; play again"


async def reap_dead_workers() -> int:
    """Report the publications of dead workers as gone; returns how many workers were reaped."""
    reg = registry()
    reaped = 0
    for worker in await reg.dead():
        if not await reg.claim(worker.worker_id):
            continue
        reaped += 1
        logger.warning("media worker %s is gone; failing its %d streams", worker.worker_id, len(worker.streams))
        for placement in worker.rooms:
            if await reg.pinned(placement) == worker.worker_id:
                await reg.unpin(placement)
        await media_events().worker_gone(WorkerGone(worker.worker_id, worker.streams, worker.rooms))
        for play_id, stream_id, reply_channel in worker.plays:
            # Its players (of any worker's streams, with cascading) may play again: another worker takes them.
            failed = PlaybackStatus(reply_channel, play_id, stream_id, PlaybackState.FAILED, PLAYER_WORKER_GONE)
            await media_events().playback_status(failed)
    return reaped
