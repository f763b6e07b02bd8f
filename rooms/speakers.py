"""Each room's current active speakers, kept for joiners.

The relay reports who speaks only when that list changes (rooms.media_events), so a participant joining while
the same people speak would not know them until the next change.  The last list of each room is kept here and
goes into the joiner's ``state``.  It is kept in Redis when REDIS_URL is set (the media worker reporting a room
and the process a joiner's WebSocket reaches may differ), in this process otherwise.  An empty list removes it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from rooms.redis_client import loop_redis

logger = logging.getLogger(__name__)

KEY = "rooms:active_speakers:{}"
TTL_SECONDS = 24 * 3600
"""A list unchanged for a day is forgotten (joiners then hear of the speakers at the next change); a joiner only
ever gets the ids of streams still live."""

_local: dict[int, list[str]] = {}


async def remember(room_id: int, stream_ids: list[str]) -> None:
    """The relay's new list for a room (loudest first); a failure to keep it is logged, never raised."""
    if not settings.REDIS_URL:
        if stream_ids:
            _local[room_id] = list(stream_ids)
        else:
            _local.pop(room_id, None)
        return
    try:
        if stream_ids:
            await loop_redis().set(KEY.format(room_id), json.dumps(stream_ids), ex=TTL_SECONDS)
        else:
            await loop_redis().delete(KEY.format(room_id))
    except Exception as exc:
        logger.warning("could not keep the active speakers of room %s: %s", room_id, exc)


async def current(room_id: int, live: Iterable[str]) -> list[str]:
    """The room's last list, restricted to the ``live`` stream ids (empty if unknown or unreadable)."""
    if not settings.REDIS_URL:
        kept = _local.get(room_id, [])
    else:
        try:
            raw = await loop_redis().get(KEY.format(room_id))
            kept = json.loads(raw) if raw else []
        except Exception as exc:
            logger.warning("could not read the active speakers of room %s: %s", room_id, exc)
            kept = []
    alive = set(live)
    return [str(stream_id) for stream_id in kept if stream_id in alive]


def live_streams(state: dict[str, Any]) -> list[str]:
    """The ids of the live streams a join ``state`` lists (the joiner's and the other participants')."""
    people = [state.get("self") or {}, *(state.get("participants") or [])]
    return [str(stream["id"]) for person in people for stream in person.get("streams") or [] if "id" in stream]
