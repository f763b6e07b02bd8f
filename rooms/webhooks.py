"""Webhooks: signed event notifications to external endpoints, delivered by the task worker.

Signal receivers (run after commit, in the committing thread) only store one
:class:`~rooms.models.WebhookDelivery` row per subscribed endpoint and enqueue
a delivery round, the durable task :func:`deliver_webhooks` (rooms.tasks),
unless one is already waiting; the task worker (``manage.py runtasks``) runs
it, never daphne or a media worker.  A round POSTs ``{id, type, time, data}`` with ``X-Webhook-Signature:
sha256=<hex HMAC-SHA256 of the body>``, retries with exponential backoff and
sends the events of one room in order: a delivery waits until every earlier
delivery with the same endpoint and room has succeeded or failed for good.
Each round takes the head of every sequence (never a prefix of the queue, so a
busy room starves no other) and sends them on WEBHOOK_CONCURRENCY threads.
Rows are claimed with a conditional UPDATE, so several processes may deliver
at once without sending an event twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connections, transaction
from django.db.models import Min
from django.db.models.signals import post_delete, post_migrate, post_save
from django.utils import timezone
from django_tasks import task

from rooms import signals
from rooms.models import WebhookDelivery, WebhookEndpoint
from rooms.presenters import iso, message_dict, participant_dict, room_dict, stream_dict
from rooms.redis_client import sync_redis
from rooms.tasks import WEBHOOK_QUEUE, enqueue_once

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Webhook-Signature"
MAX_BACKOFF_SECONDS = 3600.0


def sign(secret: str, body: bytes) -> str:
    """The X-Webhook-Signature value of ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """True when ``header`` is the signature of ``body`` (for receivers written in Python)."""
    return hmac.compare_digest(sign(secret, body), header or "")


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed) for a payload."""
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True).encode("utf-8")


# --- Event data -----------------------------------------------------------------------


def _room_ref(room: Any) -> dict[str, Any]:
    return {"id": room.pk, "name": room.name}


def _room_data(room: Any) -> dict[str, Any]:
    return {"room": {**room_dict(room), "finalized_at": iso(room.finalized_at)}}


def _participant_data(participant: Any) -> dict[str, Any]:
    data = participant_dict(participant, [])
    data["left_at"] = iso(participant.left_at)
    return {"participant": data, "room": _room_ref(participant.room)}


def _stream_data(stream: Any) -> dict[str, Any]:
    participant = stream.participant
    data = stream_dict(stream, participant.login)
    data.update(started_at=iso(stream.started_at), ended_at=iso(stream.ended_at))
    return {"stream": data, "room": _room_ref(participant.room)}


def _message_data(message: Any) -> dict[str, Any]:
    return {"message": message_dict(message), "room": _room_ref(message.room)}


def _recording_data(recording: Any) -> dict[str, Any]:
    from rooms import presenters

    present = getattr(presenters, "recording_dict", None)
    if present is not None:
        data = present(recording)
    elif hasattr(recording, "_meta"):
        data = {f.attname: getattr(recording, f.attname) for f in recording._meta.concrete_fields}
    else:
        data = {k: v for k, v in vars(recording).items() if not k.startswith("_") and k != "room"}
    data = json.loads(json.dumps(data, cls=DjangoJSONEncoder, default=str))
    room = getattr(recording, "room", None)
    return {"recording": data, "room": _room_ref(room) if room is not None else None}


def _room_id_of(kind: str, obj: Any) -> int | None:
    if kind == "room":
        return obj.pk
    if kind == "participant":
        return obj.room_id
    if kind == "stream":
        return obj.participant.room_id
    room_id = getattr(obj, "room_id", None)
    return room_id if room_id is not None else getattr(getattr(obj, "room", None), "pk", None)


# event type -> (signal kwarg, data builder)
EVENT_SOURCES: dict[str, tuple[Any, str, Any]] = {
    "room_started": (signals.room_started, "room", _room_data),
    "room_finished": (signals.room_finished, "room", _room_data),
    "participant_joined": (signals.participant_joined, "participant", _participant_data),
    "participant_left": (signals.participant_left, "participant", _participant_data),
    "stream_published": (signals.stream_published, "stream", _stream_data),
    "stream_unpublished": (signals.stream_unpublished, "stream", _stream_data),
    "recording_finished": (signals.recording_finished, "recording", _recording_data),
    "message_sent": (signals.message_sent, "message", _message_data),
}


# --- Enqueueing --------------------------------------------------------------------------


ENDPOINTS_TTL = 1.0
"""Seconds this process trusts its list of active endpoints at most: the backstop for writes that send no signal
(a bulk insert, raw SQL). A change saved or deleted through the ORM is seen at once, in this process by the
signal, in every other through the version kept in Redis (ENDPOINTS_VERSION_KEY)."""
ENDPOINTS_VERSION_KEY = "webhooks:endpoints:version"
"""A counter in REDIS_URL's Redis that every process bumps when it commits a change to an endpoint."""

def _shared_version() -> int | None:
    """The endpoints' version shared by every process; 0 without Redis (one process: signals suffice), None when
    Redis does not answer (then nothing cached is trusted)."""
    if not settings.REDIS_URL:
        return 0
    import redis

    try:
        return int(sync_redis().get(ENDPOINTS_VERSION_KEY) or 0)
    except (redis.RedisError, ValueError):
        return None


def _bump_shared_version() -> None:
    """Tell every process that an endpoint changed (after the change committed)."""
    if not settings.REDIS_URL:
        return
    import redis

    try:
        sync_redis().incr(ENDPOINTS_VERSION_KEY)
    except redis.RedisError:
        logger.warning("could not tell other processes that a webhook endpoint changed", exc_info=True)


class _Endpoints:
    """The active endpoints, read from the database only when they may have changed (instead of once per event:
    every join of a big room is one): when an endpoint was saved or deleted here, when another process bumped the
    shared version, and at least once per ENDPOINTS_TTL. Checking the version is one Redis GET."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: list[WebhookEndpoint] | None = None
        self._read_at = 0.0
        self._version: int | None = None
        self._generation = 0

    def wanting(self, event_type: str) -> list[WebhookEndpoint]:
        version = _shared_version()  # before the read: a change committed after it is seen by the next call
        with self._lock:
            endpoints, generation = self._endpoints, self._generation
            stale = time.monotonic() - self._read_at > ENDPOINTS_TTL
            if endpoints is not None and (stale or version is None or version != self._version):
                endpoints = None
        if endpoints is None:
            read_at = time.monotonic()
            endpoints = list(WebhookEndpoint.objects.filter(active=True))
            # Kept only if what was read is committed (outside any transaction: a test's or an admin's may roll
            # back) and no endpoint changed here meanwhile.
            if version is not None and not connections[WebhookEndpoint.objects.db].in_atomic_block:
                with self._lock:
                    if generation == self._generation:
                        self._endpoints, self._read_at, self._version = endpoints, read_at, version
        return [e for e in endpoints if e.wants(event_type)]

    def forget(self, **_: Any) -> None:
        with self._lock:
            self._endpoints = None
            self._generation += 1


endpoints_cache = _Endpoints()


def _changed_and_committed() -> None:
    endpoints_cache.forget()
    _bump_shared_version()


def _endpoint_changed(**kwargs: Any) -> None:
    endpoints_cache.forget()
    transaction.on_commit(_changed_and_committed, using=kwargs.get("using"))


def enqueue(event_type: str, data: dict[str, Any], sequence_key: str = "") -> list[WebhookDelivery]:
    """Store one delivery per endpoint subscribed to ``event_type`` and wake the deliverer."""
    return _enqueue(event_type, endpoints_cache.wanting(event_type), data, sequence_key)


def _enqueue(
    event_type: str, endpoints: list[WebhookEndpoint], data: dict[str, Any], sequence_key: str
) -> list[WebhookDelivery]:
    if not endpoints:
        return []
    created = []
    for endpoint in endpoints:
        delivery = WebhookDelivery(endpoint=endpoint, event_type=event_type, sequence_key=sequence_key)
        delivery.payload = {"id": str(delivery.event_id), "type": event_type, "time": iso(timezone.now()), "data": data}
        delivery.next_attempt_at = timezone.now()
        try:
            delivery.save()
        except IntegrityError:
            if connections[WebhookDelivery.objects.db].in_atomic_block:
                raise
            endpoints_cache.forget()  # the endpoint was deleted by another process since this one read it
            continue
        created.append(delivery)
    wake()
    return created


def _make_receiver(event_type: str, kwarg: str, build: Any) -> Any:
    def receiver(sender: Any, **kwargs: Any) -> None:
        obj = kwargs.get(kwarg)
        if obj is None:
            return
        try:
            endpoints = endpoints_cache.wanting(event_type)
            if not endpoints:  # the event's data is not even built
                return
            room_id = _room_id_of(kwarg, obj)
            _enqueue(event_type, endpoints, build(obj), f"room-{room_id}" if room_id is not None else "")
        except Exception:
            logger.exception("could not queue the %s webhook", event_type)

    receiver.__name__ = f"webhook_{event_type}"
    return receiver


_receivers: list[Any] = []


def connect_receivers() -> None:
    """Listen to every domain signal that can become a webhook event (idempotent)."""
    if _receivers:
        return
    for event_type, (signal, kwarg, build) in EVENT_SOURCES.items():
        receiver = _make_receiver(event_type, kwarg, build)
        _receivers.append(receiver)
        signal.connect(receiver, dispatch_uid=f"rooms.webhooks.{event_type}")
    for change in (post_save, post_delete):
        change.connect(_endpoint_changed, sender=WebhookEndpoint, dispatch_uid="rooms.webhooks.endpoints")
    post_migrate.connect(endpoints_cache.forget, dispatch_uid="rooms.webhooks.endpoints")  # and `flush`


# --- Delivering -----------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect())


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """POST ``body``; return (status code or None, error text)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{exc.__class__.__name__}: {reason}"


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failure."""
    return min(settings.WEBHOOK_RETRY_BASE_SECONDS * (2 ** max(attempts - 1, 0)), MAX_BACKOFF_SECONDS)


def attempt(delivery: WebhookDelivery) -> bool:
    """Send one claimed delivery once and record the result; True on a 2xx answer."""
    endpoint = delivery.endpoint
    body = encode_body(delivery.payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "conference-webhooks/1",
        SIGNATURE_HEADER: sign(endpoint.secret, body),
        "X-Webhook-Id": str(delivery.event_id),
        "X-Webhook-Event": delivery.event_type,
    }
    code, error = post(endpoint.url, body, headers, settings.WEBHOOK_TIMEOUT_SECONDS)
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_status_code = code
    delivery.claimed_until = None
    if code is not None and 200 <= code < 300:
        delivery.status = WebhookDelivery.Status.SUCCEEDED
        delivery.delivered_at = now
        delivery.last_error = ""
    else:
        delivery.last_error = (error or f"HTTP {code}")[:2000]
        if delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            delivery.status = WebhookDelivery.Status.FAILED
            logger.warning("webhook %s to %s failed for good: %s", delivery.event_id, endpoint.url, delivery.last_error)
        else:
            delivery.status = WebhookDelivery.Status.PENDING
            delivery.next_attempt_at = now + timedelta(seconds=backoff(delivery.attempts))
    delivery.save(
        update_fields=[
            "attempts",
            "last_status_code",
            "claimed_until",
            "status",
            "delivered_at",
            "last_error",
            "next_attempt_at",
        ]
    )
    return delivery.status == WebhookDelivery.Status.SUCCEEDED


#: Most sequences (endpoint, room) looked at in one round; each contributes only its head, so one busy room
#: cannot crowd the others out (finding 9 of issue 11).
MAX_HEADS_PER_ROUND = 2000
_OPEN = (WebhookDelivery.Status.PENDING, WebhookDelivery.Status.SENDING)


def _heads(now: datetime, limit: int = MAX_HEADS_PER_ROUND) -> tuple[list[WebhookDelivery], datetime | None]:
    """The first unfinished delivery of each (endpoint, room) sequence that is due (at most ``limit``, oldest
    sequences first), and the next due time.  One row per sequence is read, however long its queue."""
    open_rows = WebhookDelivery.objects.filter(status__in=_OPEN)
    sequences = (
        open_rows.exclude(sequence_key="").order_by().values("endpoint_id", "sequence_key").annotate(head=Min("pk"))
    )
    sequenced = sorted(group["head"] for group in sequences)[:MAX_HEADS_PER_ROUND]
    single = open_rows.filter(sequence_key="").order_by("pk").values_list("pk", flat=True)[:MAX_HEADS_PER_ROUND]
    head_ids = sorted([*sequenced, *single])[:MAX_HEADS_PER_ROUND]
    due: list[WebhookDelivery] = []
    next_due: datetime | None = None
    for row in open_rows.filter(pk__in=head_ids).select_related("endpoint").order_by("pk"):
        sending = row.status == WebhookDelivery.Status.SENDING
        when = (row.claimed_until if sending else row.next_attempt_at) or now
        if when <= now:
            if len(due) < limit:
                due.append(row)
        elif next_due is None or when < next_due:
            next_due = when
    return due, next_due


def _claim(delivery: WebhookDelivery, now: datetime) -> bool:
    """Take a delivery for this process; False when another process took it first."""
    # Past the lease a delivery whose sender died (a killed task worker) is due again.
    lease = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 10)
    taken = WebhookDelivery.objects.filter(pk=delivery.pk, status=delivery.status, attempts=delivery.attempts).update(
        status=WebhookDelivery.Status.SENDING, claimed_until=lease
    )
    return taken == 1


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_in_flight: set[Future[bool]] = set()


def _sender_pool() -> ThreadPoolExecutor:
    """The threads that POST deliveries (WEBHOOK_CONCURRENCY of them, made once per process)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(settings.WEBHOOK_CONCURRENCY, 1), thread_name_prefix="webhook-sender")
        return _pool


def _send(delivery: WebhookDelivery) -> bool:
    """Attempt one claimed delivery in a sender thread, then give that thread's database connection back."""
    try:
        return attempt(delivery)
    finally:
        connections.close_all()


def _sent(future: Future[bool]) -> None:
    with _pool_lock:
        _in_flight.discard(future)
    _slot_free.set()  # a slot is free: look for more work


def deliver_due(wait: bool = True) -> tuple[int, datetime | None]:
    """Attempt every due sequence head once, up to WEBHOOK_CONCURRENCY at a time (one per sequence, so the
    events of one room keep their order and a slow receiver holds up only its own sequences); return how
    many were started and when the next one is due.  ``wait``: return once they are all done."""
    now = timezone.now()
    with _pool_lock:
        free = max(settings.WEBHOOK_CONCURRENCY, 1) - len(_in_flight)
    due, next_due = _heads(now, limit=max(free, 0))
    pool = _sender_pool()
    started: list[Future[bool]] = []
    for delivery in due:
        if not _claim(delivery, now):
            continue
        future = pool.submit(_send, delivery)
        with _pool_lock:
            _in_flight.add(future)
        future.add_done_callback(_sent)
        started.append(future)
    if wait:
        futures_wait(started)
    return len(started), next_due


#: A round waits in the worker for a retry due within this many seconds; a later one becomes a deferred task.
ROUND_HORIZON_SECONDS = 1.0
#: Seconds before a round that broke (database error) is tried again.
RETRY_ROUND_SECONDS = 10.0
_slot_free = threading.Event()


@task(queue_name=WEBHOOK_QUEUE)
def deliver_webhooks() -> int:
    """The webhook task: one delivery round in the task worker (see :func:`run_round`)."""
    return run_round()


def run_round() -> int:
    """Send every due delivery, WEBHOOK_CONCURRENCY at a time, until none is due within ROUND_HORIZON_SECONDS
    and none is in flight; enqueue a deferred round for the next retry; return how many were sent."""
    sent = 0
    try:
        while True:
            _slot_free.clear()
            started, next_due = deliver_due(wait=False)
            sent += started
            if started:
                continue
            with _pool_lock:
                busy = bool(_in_flight)
            delay = None if next_due is None else max((next_due - timezone.now()).total_seconds(), 0.0)
            if busy:
                _slot_free.wait(min(delay if delay is not None else 1.0, 1.0))
            elif delay is None:
                return sent
            elif delay <= ROUND_HORIZON_SECONDS:
                time.sleep(max(delay, 0.01))
            else:
                assert next_due is not None
                enqueue_once(deliver_webhooks, run_after=next_due)
                return sent
    except Exception:
        # The database went away mid-round (the task is marked failed): queue another round for later, if it can
        # be queued at all; otherwise the next event or worker start queues one.
        logger.exception("webhook delivery round failed; another is queued in %.0f s", RETRY_ROUND_SECONDS)
        try:
            enqueue_once(deliver_webhooks, run_after=timezone.now() + timedelta(seconds=RETRY_ROUND_SECONDS))
        except Exception:
            logger.warning("could not queue the next webhook round")
        raise
    finally:
        connections.close_all()


def wake() -> None:
    """Have the task worker look for due deliveries now (enqueue a round unless one is waiting to start)."""
    enqueue_once(deliver_webhooks)


def stop(timeout: float = 5.0) -> None:
    """Wait (at most ``timeout`` seconds) for this process's sends in flight (tests, shutdown)."""
    with _pool_lock:
        pending = list(_in_flight)
    futures_wait(pending, timeout=timeout)
