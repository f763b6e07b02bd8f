"""Media workers' counters gathered through Redis, so that daphne's /metrics shows every worker.

A ``runmedia`` process has no HTTP server; each one writes its relay figures
(media_relay.stats.relay_figures) every MEDIA_METRICS_INTERVAL seconds into a
Redis hash ``media:metrics:<worker id>`` that expires after MEDIA_METRICS_TTL
seconds, and adds its id to the set ``media:metrics:workers``.  Whichever
daphne process Prometheus scrapes reads every live hash (:func:`read_all`) and
labels the figures with the worker id (rooms.metrics): one scrape target for the
whole cluster, nothing to open per worker, and a worker that died drops out
once its hash expires.  This module knows nothing of rooms (import-linter).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict
from typing import Any

from django.conf import settings

from media_relay.stats import LIVE_WORKERS, PlacementFigures, local_placement_figures, relay_figures

logger = logging.getLogger(__name__)

KEY = "media:metrics:{}"
PLACEMENTS = "media:placements:{}"
"""A hash per worker: placement key -> its PlacementFigures as JSON (the admin's per-room media figures)."""
WORKERS = "media:metrics:workers"

#: The figures published (RelayFigures fields); counters only grow while the worker lives.
COUNTERS = (
    "packets_received", "bytes_received", "packets_forwarded", "bytes_forwarded", "nacks_sent", "nacks_received",
    "plis_sent", "plis_received", "publications_opened", "playbacks_opened", "decoders_created", "encoders_created",
)
GAUGES = ("peer_connections", "publications", "playbacks", "packets_lost", "packets_expected")


def snapshot(worker_id: str) -> dict[str, str]:
    """This process's figures as the hash fields to publish."""
    figures = asdict(relay_figures())
    fields = {name: str(figures[name]) for name in (*COUNTERS, *GAUGES)}
    fields.update(worker=worker_id, pid=str(os.getpid()), published_at=f"{time.time():.3f}")
    return fields


async def publish(client: Any, worker_id: str) -> None:
    """Write this worker's figures once, with their time to live."""
    key = KEY.format(worker_id)
    ttl = max(int(settings.MEDIA_METRICS_TTL), 1)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=snapshot(worker_id))
        pipe.expire(key, ttl)
        pipe.sadd(WORKERS, worker_id)
        placements = PLACEMENTS.format(worker_id)
        pipe.delete(placements)
        rows = placement_snapshot()
        if rows:
            pipe.hset(placements, mapping=rows)
            pipe.expire(placements, ttl)
        await pipe.execute()


def placement_snapshot() -> dict[str, str]:
    """This process's per-placement figures as the hash fields to publish."""
    rows: dict[str, str] = {}
    for worker in list(LIVE_WORKERS):
        for placement, figures in worker.placement_figures().items():
            rows[str(placement)] = json.dumps(asdict(figures))
    return rows


async def publish_forever(worker_id: str) -> None:
    """Publish every MEDIA_METRICS_INTERVAL seconds until cancelled (then remove the hash); no-op without Redis."""
    url = settings.REDIS_URL
    if not url:
        return
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    try:
        while True:
            try:
                await publish(client, worker_id)
            except Exception as exc:  # Redis restarting: the next round publishes again
                logger.warning("media worker %s could not publish its metrics: %s", worker_id, exc)
            await asyncio.sleep(settings.MEDIA_METRICS_INTERVAL)
    finally:
        try:
            await asyncio.shield(_withdraw(client, worker_id))
        except Exception:
            pass
        await client.aclose()


async def _withdraw(client: Any, worker_id: str) -> None:
    await client.delete(KEY.format(worker_id), PLACEMENTS.format(worker_id))
    await client.srem(WORKERS, worker_id)


def read_all(url: str, timeout: float = 2.0) -> dict[str, dict[str, float]]:
    """Every live worker's figures by worker id (blocking; for a scrape).  Ids whose hash expired are removed
    from the set."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        ids = sorted(str(worker_id) for worker_id in client.smembers(WORKERS))
        if not ids:
            return {}
        pipe = client.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hgetall(KEY.format(worker_id))
        found: dict[str, dict[str, float]] = {}
        gone = []
        for worker_id, fields in zip(ids, pipe.execute(), strict=True):
            if not fields:
                gone.append(worker_id)
                continue
            found[worker_id] = {
                name: float(fields[name]) for name in (*COUNTERS, *GAUGES, "published_at") if name in fields
            }
        if gone:
            client.srem(WORKERS, *gone)
        return found
    finally:
        client.close()


def placement_figures(placement: int, timeout: float = 2.0) -> dict[str, PlacementFigures]:
    """What every live media worker relays for ``placement``, by worker id: this process's own workers, then the
    ``runmedia`` workers' published figures (blocking; Redis errors leave those out)."""
    found = local_placement_figures(placement)
    url = settings.REDIS_URL
    if not url:
        return found
    import redis

    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        ids = sorted(str(worker_id) for worker_id in client.smembers(WORKERS) if worker_id not in found)
        pipe = client.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hget(PLACEMENTS.format(worker_id), str(placement))
        for worker_id, row in zip(ids, pipe.execute(), strict=True):
            if row:
                found[worker_id] = PlacementFigures(**json.loads(row))
    except redis.RedisError as exc:
        logger.warning("media workers' figures unavailable: %s", exc)
    finally:
        client.close()
    return found
