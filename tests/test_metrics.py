"""/healthz (database, channel layer) and Prometheus /metrics: in process, and through real daphne and peers."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from tests.conftest import require_redis
from tests.media_sources import CounterVideoTrack, ToneAudioTrack
from tests.roomclient import RoomClient, add_live_stream
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(client: Any, **extra: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics through Django's test client and parse it."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


# --- /healthz ------------------------------------------------------------------------------------


def test_healthz_reports_each_check(client: Any, settings: Any) -> None:
    """200 with JSON checks: the database, and the channel layer when REDIS_URL is set."""
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["checks"]["database"] == "ok"
    if settings.REDIS_URL:
        assert body["checks"]["channel_layer"] == "ok"
    else:
        assert "channel_layer" not in body["checks"]


def test_healthz_is_503_when_the_database_is_down(client: Any) -> None:
    """A database that refuses connections: 503 naming the failed check."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-dir/for-healthz/db.sqlite3"
    else:
        connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", "1"
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["checks"]["database"].startswith("error")


def test_healthz_is_503_when_redis_is_down(client: Any, settings: Any) -> None:
    """With REDIS_URL naming a Redis that does not answer, the channel-layer check fails: 503."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [settings.REDIS_URL]}}
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok" and body["checks"]["channel_layer"] != "ok"


def http_healthz(url: str) -> tuple[int, dict[str, Any]]:
    """GET /healthz of a server: status and JSON body (200 or 503)."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=WAIT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_healthz_with_a_room_open_over_redis(transactional_db: Any) -> None:
    """Regression: once a room is open, the process's room hub reads its channels for good; the probe's ping
    must still come back (it went to a channel no one read, so /healthz timed out: 503, for good)."""
    require_redis()
    with DaphneServer({"MEDIA_CONNECT_TIMEOUT": "5"}) as srv:
        ann = await roomapi.connect(srv.ws_url, "ann")
        try:
            await ann.join("healthz-hub")
            for _ in range(2):
                status, body = await asyncio.to_thread(http_healthz, srv.http_url)
                assert (status, body["checks"]) == (200, {"database": "ok", "channel_layer": "ok"})
        finally:
            await ann.disconnect()


# --- /metrics --------------------------------------------------------------------------------------


def test_metrics_access(client: Any, settings: Any) -> None:
    """Loopback and staff may scrape; others get 403 unless METRICS_PUBLIC."""
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    user = User.objects.create_user("ops", password="x" * 12)
    client.force_login(user)
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    user.is_staff = True
    user.save()
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    client.logout()
    settings.METRICS_PUBLIC = True
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200


async def test_metrics_follow_rooms_participants_streams_and_joins(async_client: Any) -> None:
    """Gauges read the database at scrape time; each join is observed in the latency histogram."""

    async def scrape_async() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = await async_client.get("/metrics")
        assert response.status_code == 200
        return samples(response.content.decode())

    before = await scrape_async()
    joins_before = before[("conference_join_latency_seconds_count", ())]
    assert before[("conference_database_up", ())] == 1
    alice = await RoomClient.open("alice")
    bob = await RoomClient.open("bob")
    carol = await RoomClient.open("carol")
    await alice.join("m1")
    await bob.join("m1")
    await carol.join("m2")
    await add_live_stream("m1", "alice")
    now = await scrape_async()
    assert now[("conference_rooms_active", ())] == 2
    assert now[("conference_participants", (("state", "connected"),))] == 3
    assert now[("conference_participants", (("state", "disconnected"),))] == 0
    assert now[("conference_streams", (("status", "PUBLISHING"),))] == 1
    assert now[("conference_join_latency_seconds_count", ())] == joins_before + 3
    assert now[("conference_join_latency_seconds_bucket", (("le", "+Inf"),))] == joins_before + 3
    assert now[("conference_join_latency_seconds_sum", ())] > before[("conference_join_latency_seconds_sum", ())]
    for name in ("conference_media_packets_forwarded_total", "conference_media_bytes_forwarded_total",
                 "conference_media_peer_connections", "conference_media_packet_loss_ratio",
                 "conference_media_codecs_created_total", "process_resident_memory_bytes"):
        assert any(key[0] == name for key in now), name
    await carol.request({"type": "leave"})
    await bob.close()  # a drop: disconnected until ROOM_IDLE_TIMEOUT
    for _ in range(100):
        later = await scrape_async()
        if later[("conference_participants", (("state", "disconnected"),))] == 1:
            break
        await asyncio.sleep(0.05)
    assert later[("conference_rooms_active", ())] == 1
    assert later[("conference_participants", (("state", "connected"),))] == 1
    await alice.close()
    await carol.close()


# --- relay figures through a real daphne and real peers ------------------------------------------------


@pytest.fixture
def server(transactional_db: Any) -> Iterator[DaphneServer]:
    """A daphne process with the relay in-process."""
    with DaphneServer({"MEDIA_CONNECT_TIMEOUT": "5"}) as srv:
        yield srv


def http_metrics(server: DaphneServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape the server process."""
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as response:
        return samples(response.read().decode())


async def test_relay_figures_in_metrics(server: DaphneServer) -> None:
    """A real publisher and player: packets/bytes forwarded grow, peers and publications counted, loss measured."""
    ann = await roomapi.connect(server.ws_url, "ann")
    bob = await roomapi.connect(server.ws_url, "bob")
    room_a, room_b = await ann.join("metrics"), await bob.join("metrics")
    published = await room_a.publish(video=CounterVideoTrack((200, 40, 40)), audio=ToneAudioTrack())
    await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    await room_b.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    play = await room_b.get_participant("ann").get_streams()[0].play()  # type: ignore[union-attr]
    await asyncio.wait_for(play.video.recv(), WAIT)
    deadline = time.monotonic() + WAIT
    while True:
        figures = await asyncio.to_thread(http_metrics, server)
        if figures[("conference_media_packets_expected", ())] > 50 and figures[
            ("conference_media_packets_forwarded_total", ())
        ] > 50:
            break
        assert time.monotonic() < deadline, figures
        await asyncio.sleep(0.2)
    assert figures[("conference_media_bytes_forwarded_total", ())] > 0
    assert figures[("conference_media_peer_connections", ())] >= 2
    assert figures[("conference_media_publications", ())] == 1
    assert figures[("conference_media_playbacks", ())] == 1
    assert figures[("conference_streams", (("status", "PUBLISHING"),))] == 1
    assert 0 <= figures[("conference_media_packet_loss_ratio", ())] < 0.5
    assert figures[("conference_media_codecs_created_total", ())] == 0
    await ann.disconnect()
    await bob.disconnect()
