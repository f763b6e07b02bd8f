"""Prometheus metrics: room gauges read from the database at scrape time, relay counters, join latency.

``REGISTRY`` holds everything /metrics exposes: a collector that reads the room
gauges, the webhook and task queues and the mix durations from the database,
this process's relay figures (media_relay.stats.relay_figures) and every media
worker's figures from Redis (media_relay.metrics_publisher, labelled by
worker) when scraped; the join latency histogram, the WebSocket connection
gauge and the error counter the consumer keeps; and the standard process
metrics.  docs/operations.md lists every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from media_relay import metrics_publisher
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


#: WebSocket connections this daphne process holds open.
WEBSOCKETS = Gauge(
    "conference_websocket_connections", "WebSocket connections open in this process.", registry=REGISTRY
)
#: Error events sent to clients, by protocol error code (a refused hello counts under its code too).
ERRORS = Counter("conference_errors", "Error events sent to clients, by code.", ["code"], registry=REGISTRY)


def observe_join(seconds: float) -> None:
    """Record one join's latency."""
    JOIN_LATENCY.observe(seconds)


def websocket_opened() -> None:
    """One more open WebSocket connection."""
    WEBSOCKETS.inc()


def websocket_closed() -> None:
    """One WebSocket connection fewer."""
    WEBSOCKETS.dec()


def count_error(code: str) -> None:
    """One error event sent with ``code``."""
    ERRORS.labels(code=str(code)).inc()


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
        yield from self._queues()
        yield from self._relay()
        yield from self._media_workers()

    def _queues(self) -> Iterator[Metric]:
        from django.db.models import Count, DurationField, ExpressionWrapper, F, Sum

        from rooms.models import WebhookDelivery
        from rooms.recording_models import Recording
        from rooms.tasks import queue_depths

        try:
            deliveries = dict(
                WebhookDelivery.objects.values_list("status").annotate(n=Count("pk")).order_by()
            )
            tasks = queue_depths()
            mixes = (
                Recording.objects.filter(kind=Recording.Kind.MIXED, status=Recording.Status.DONE,
                                         started_at__isnull=False, finished_at__isnull=False)
                .annotate(took=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()))
                .aggregate(n=Count("pk"), total=Sum("took"))
            )
        except Exception as exc:
            logger.warning("metrics: the queues could not be read: %s", exc)
            return
        webhooks = GaugeMetricFamily(
            "conference_webhook_deliveries", "Webhook deliveries kept (WEBHOOK_RETENTION_DAYS), by status: pending "
            "and sending are the queue, failed gave up.", labels=["status"])
        for status in WebhookDelivery.Status.values:
            webhooks.add_metric([str(status)], int(deliveries.get(status, 0)))
        yield webhooks
        queued = GaugeMetricFamily("conference_tasks", "Background tasks waiting (ready) or running, by queue.",
                                   labels=["queue", "status"])
        for (queue, status), count in sorted(tasks.items()):
            queued.add_metric([queue, status], count)
        yield queued
        took = mixes["total"]
        summary = SummaryMetricFamily("conference_mix_duration_seconds",
                                      "Wall-clock seconds of the room mixes done (kept recordings).")
        summary.add_metric([], count_value=int(mixes["n"] or 0),
                           sum_value=took.total_seconds() if took is not None else 0.0)
        yield summary

    def _media_workers(self) -> Iterator[Metric]:
        reporting = GaugeMetricFamily("conference_media_workers_reporting",
                                      "Media workers (runmedia) whose published figures are live in Redis.")
        workers: dict[str, dict[str, float]] = {}
        if settings.REDIS_URL:
            try:
                workers = metrics_publisher.read_all(settings.REDIS_URL)
            except Exception as exc:
                logger.warning("metrics: the media workers' figures could not be read: %s", exc)
        reporting.add_metric([], len(workers))
        yield reporting
        for name, documentation in WORKER_COUNTERS:
            counter = CounterMetricFamily(f"conference_media_worker_{name}", documentation, labels=["worker"])
            for worker_id, figures in workers.items():
                counter.add_metric([worker_id], figures.get(name, 0.0))
            yield counter
        for name, documentation in WORKER_GAUGES:
            gauge = GaugeMetricFamily(f"conference_media_worker_{name}", documentation, labels=["worker"])
            for worker_id, figures in workers.items():
                gauge.add_metric([worker_id], figures.get(name, 0.0))
            yield gauge

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
            ("conference_media_packets_received", "RTP packets received from publishers by this process.",
             relay.packets_received),
            ("conference_media_bytes_received", "RTP payload bytes received from publishers by this process.",
             relay.bytes_received),
            ("conference_media_nacks_sent", "RTCP NACKs sent to publishers by this process.", relay.nacks_sent),
            ("conference_media_nacks_received", "RTCP NACKs received from players by this process.",
             relay.nacks_received),
            ("conference_media_plis_sent", "Keyframe requests sent to publishers by this process.", relay.plis_sent),
            ("conference_media_plis_received", "Keyframe requests received from players by this process.",
             relay.plis_received),
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


#: The media workers' counters (media_relay.metrics_publisher.COUNTERS) and gauges, each with a worker label.
WORKER_COUNTERS = (
    ("packets_received", "RTP packets received from publishers by the worker."),
    ("bytes_received", "RTP payload bytes received from publishers by the worker."),
    ("packets_forwarded", "RTP packets forwarded to players by the worker."),
    ("bytes_forwarded", "RTP payload bytes forwarded to players by the worker."),
    ("nacks_sent", "RTCP NACKs the worker sent to publishers."),
    ("nacks_received", "RTCP NACKs the worker received from players."),
    ("plis_sent", "Keyframe requests (PLI) the worker sent to publishers."),
    ("plis_received", "Keyframe requests (PLI/FIR) the worker received from players."),
    ("publications_opened", "Publisher peer connections the worker opened."),
    ("playbacks_opened", "Player peer connections the worker opened."),
)
WORKER_GAUGES = (
    ("peer_connections", "Peer connections of the worker not closed."),
    ("publications", "Live publications of the worker."),
    ("playbacks", "Live playbacks of the worker."),
    ("packets_lost", "RTP packets lost from publishers (the worker's live publications)."),
    ("packets_expected", "RTP packets expected from publishers (the worker's live publications)."),
)

REGISTRY.register(ConferenceCollector())
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
