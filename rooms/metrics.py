"""Prometheus metrics: room gauges read from the database at scrape time, relay counters, join latency.

``REGISTRY`` holds everything /metrics exposes: a collector that reads the room
gauges and this process's relay figures (media_relay.stats.relay_figures) when
scraped, the join latency histogram the consumer observes,
and the standard process metrics.  docs/operations.md lists every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from media_relay.stats import relay_figures

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()

#: Seconds from a join command received to its STATE sent (successful joins only).
JOIN_LATENCY = Histogram(
    "conference_join_latency_seconds",
    "Time from a join command received to its state reply sent.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)


def observe_join(seconds: float) -> None:
    """Record one join's latency."""
    JOIN_LATENCY.observe(seconds)


def room_figures() -> dict[str, Any]:
    """Active rooms, participants by state and live streams by status, from the database."""
    from django.db.models import Count

    from rooms.models import Participant, Room, Stream

    active = Room.objects.filter(finalized_at__isnull=True)
    participants: dict[str, int] = {str(Participant.State.CONNECTED): 0, str(Participant.State.DISCONNECTED): 0}
    by_state = (
        Participant.objects.filter(room__finalized_at__isnull=True, state__in=list(participants))
        .values("state")
        .annotate(n=Count("id"))
    )
    participants.update({str(row["state"]): int(row["n"]) for row in by_state})
    streams: dict[str, int] = {str(Stream.Status.PENDING): 0, str(Stream.Status.PUBLISHING): 0}
    by_status = Stream.objects.filter(status__in=list(streams)).values("status").annotate(n=Count("id"))
    streams.update({str(row["status"]): int(row["n"]) for row in by_status})
    return {"rooms": active.count(), "participants": participants, "streams": streams}


class ConferenceCollector(Collector):
    """Reads room gauges from the database and relay figures from this process at scrape time."""

    def collect(self) -> Iterator[Metric]:
        """The metric families of one scrape."""
        yield from self._rooms()
        yield from self._relay()

    def _rooms(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("conference_database_up", "1 when the room gauges could be read from the database.")
        try:
            figures = room_figures()
        except Exception as exc:  # a scrape must still answer (the process metrics, the relay)
            logger.warning("metrics: the database did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        rooms = GaugeMetricFamily("conference_rooms_active", "Rooms not finalized.")
        rooms.add_metric([], figures["rooms"])
        yield rooms
        participants = GaugeMetricFamily(
            "conference_participants", "Participants of active rooms by state.", labels=["state"]
        )
        for state, count in figures["participants"].items():
            participants.add_metric([str(state)], count)
        yield participants
        streams = GaugeMetricFamily("conference_streams", "Live streams by status.", labels=["status"])
        for status, count in figures["streams"].items():
            streams.add_metric([str(status)], count)
        yield streams

    def _relay(self) -> Iterator[Metric]:
        relay = relay_figures()
        counters = (
            ("conference_media_packets_forwarded", "RTP packets forwarded to players by this process.",
             relay.packets_forwarded),
            ("conference_media_bytes_forwarded", "RTP payload bytes forwarded to players by this process.",
             relay.bytes_forwarded),
            ("conference_media_publications_opened", "Publisher peer connections opened by this process.",
             relay.publications_opened),
            ("conference_media_playbacks_opened", "Player peer connections opened by this process.",
             relay.playbacks_opened),
            ("conference_media_codecs_created", "Decoders and encoders created (the relay never transcodes: 0).",
             relay.decoders_created + relay.encoders_created),
        )
        for name, documentation, value in counters:
            counter = CounterMetricFamily(name, documentation)
            counter.add_metric([], value)
            yield counter
        lost, expected = relay.packets_lost, relay.packets_expected
        gauges: tuple[tuple[str, str, float], ...] = (
            ("conference_media_peer_connections", "Peer connections of this process not closed.",
             relay.peer_connections),
            ("conference_media_publications", "Live publications of this process's media workers.",
             relay.publications),
            ("conference_media_playbacks", "Live playbacks of this process's media workers.", relay.playbacks),
            ("conference_media_packets_lost", "RTP packets lost from publishers (live publications).", lost),
            ("conference_media_packets_expected", "RTP packets expected from publishers (live publications).",
             expected),
            ("conference_media_packet_loss_ratio", "Lost over expected RTP packets of live publications (0..1).",
             lost / expected if expected else 0.0),
        )
        for name, documentation, figure in gauges:
            gauge = GaugeMetricFamily(name, documentation)
            gauge.add_metric([], figure)
            yield gauge


REGISTRY.register(ConferenceCollector())
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
