"""Webhooks: a real local HTTP receiver checks signatures, per-room order, retries and the delivery log.

Deliveries go out through the task worker (tests/task_worker.py runs django-tasks-db's worker loop in the test);
tests/test_tasks.py kills and restarts real worker processes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from rooms import services, signals, webhooks
from rooms.models import Room, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "s3cret"
WAIT = 15.0


@dataclass
class Receiver:
    """A webhook receiver on a free port; ``answers`` are the status codes to give, then 200."""

    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Where to POST."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self, status: int | None = 200) -> list[dict[str, Any]]:
        """Bodies received (and answered with ``status``), decoded, in arrival order."""
        with self.lock:
            return [
                json.loads(body)
                for headers, body in self.received
                if status is None or headers["_answer"] == str(status)
            ]


@pytest.fixture
def receiver(settings: Any, task_worker: object) -> Iterator[Receiver]:
    """A running receiver and the task worker that delivers to it; short retry backoff."""
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.05
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                code = state.answers.pop(0) if state.answers else 200
                headers = {k: v for k, v in self.headers.items()}
                headers["_answer"] = str(code)
                state.received.append((headers, body))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    yield state
    webhooks.stop()
    state.server.shutdown()
    state.server.server_close()


def wait_for(check: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``check`` until true, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def endpoint(receiver: Receiver, events: list[str] | None = None) -> WebhookEndpoint:
    """A subscribed endpoint."""
    kwargs = {} if events is None else {"events": events}
    return WebhookEndpoint.objects.create(url=receiver.url, secret=SECRET, **kwargs)


def room_lifecycle(name: str) -> None:
    """Two participants join and leave; the room starts and finishes."""
    a = services.join("alice", name, "chan-a")
    b = services.join("bob", name, "chan-b")
    services.leave(a.participant_id)
    services.leave(b.participant_id)


EXPECTED = [
    ("room_started", None),
    ("participant_joined", "alice"),
    ("participant_joined", "bob"),
    ("participant_left", "alice"),
    ("participant_left", "bob"),
    ("room_finished", None),
]


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["type"], e["data"].get("participant", {}).get("login")) for e in events]


def test_signed_events_arrive_in_order(receiver: Receiver) -> None:
    """Each body is {id, type, time, data}, signed with the secret; a room's events arrive in order."""
    endpoint(receiver)
    room_lifecycle("r1")
    wait_for(lambda: len(receiver.events()) == len(EXPECTED))
    with receiver.lock:
        for headers, body in receiver.received:
            assert headers["X-Webhook-Signature"] == webhooks.sign(SECRET, body)
            assert webhooks.verify(SECRET, body, headers["X-Webhook-Signature"])
            assert not webhooks.verify("other", body, headers["X-Webhook-Signature"])
            assert headers["Content-Type"] == "application/json"
    events = receiver.events()
    assert _summary(events) == EXPECTED
    assert all(set(e) == {"id", "type", "time", "data"} for e in events)
    assert len({e["id"] for e in events}) == len(events)
    assert events[0]["data"]["room"]["name"] == "r1" and events[-1]["data"]["room"]["finalized_at"]
    assert events[1]["data"]["room"] == {"id": events[0]["data"]["room"]["id"], "name": "r1"}
    wait_for(lambda: WebhookDelivery.objects.filter(status="succeeded").count() == len(EXPECTED))
    assert set(WebhookDelivery.objects.values_list("attempts", "last_status_code")) == {(1, 200)}


def test_retry_after_500_keeps_order(receiver: Receiver) -> None:
    """The receiver first answers 500: the event is retried with backoff and later events wait for it."""
    receiver.answers = [500]
    endpoint(receiver)
    room_lifecycle("r2")
    wait_for(lambda: len(receiver.events()) == len(EXPECTED))
    failed = receiver.events(status=500)
    assert [e["type"] for e in failed] == ["room_started"]
    assert _summary(receiver.events()) == EXPECTED
    assert receiver.events()[0]["id"] == failed[0]["id"]
    first = WebhookDelivery.objects.get(event_type="room_started")
    wait_for(lambda: WebhookDelivery.objects.get(pk=first.pk).status == "succeeded")
    first.refresh_from_db()
    assert first.attempts == 2 and first.last_status_code == 200 and first.delivered_at is not None


def test_gives_up_after_max_attempts_and_logs(receiver: Receiver, settings: Any) -> None:
    """After WEBHOOK_MAX_ATTEMPTS failures a delivery is failed with its error, and the room's next event goes out."""
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver.answers = [503, 503]
    endpoint(receiver, ["room_started", "room_finished"])
    room = services.join("alice", "r3", "chan-a")
    services.leave(room.participant_id)
    wait_for(lambda: [e["type"] for e in receiver.events()] == ["room_finished"])
    failed = WebhookDelivery.objects.get(event_type="room_started")
    assert failed.status == "failed" and failed.attempts == 2 and failed.last_status_code == 503
    assert "503" in failed.last_error


def test_rooms_are_independent_and_endpoints_filter_events(receiver: Receiver) -> None:
    """message_sent is opt-in; an endpoint gets only its events; two rooms each keep their order."""
    endpoint(receiver, ["participant_joined", "message_sent"])
    other = WebhookEndpoint.objects.create(
        url=receiver.url + "?other", secret="x", events=["room_started"], active=False
    )
    a = services.join("alice", "ra", "chan-a")
    b = services.join("bob", "rb", "chan-b")
    services.send_message(a.participant_id, "hello")
    services.send_message(b.participant_id, "hi")
    wait_for(lambda: len(receiver.events()) == 4)
    events = receiver.events()
    for room in ("ra", "rb"):
        mine = [e["type"] for e in events if e["data"]["room"]["name"] == room]
        assert mine == ["participant_joined", "message_sent"]
    assert not other.deliveries.exists()
    assert "message_sent" not in WebhookEndpoint(url="http://x", secret="y").events


def test_recording_finished_is_delivered(receiver: Receiver) -> None:
    """The recorder's recording_finished signal becomes a webhook with the recording and its room."""
    endpoint(receiver, ["recording_finished"])
    room = Room.objects.create(name="rec", max_participants=2)
    signals.recording_finished.send(sender=None, recording=SimpleNamespace(id=7, room=room, file="rec.webm"))
    wait_for(lambda: len(receiver.events()) == 1)
    event = receiver.events()[0]
    assert event["type"] == "recording_finished"
    assert event["data"]["recording"] == {"id": 7, "file": "rec.webm"}
    assert event["data"]["room"] == {"id": room.pk, "name": "rec"}


def test_unreachable_endpoint_is_logged(receiver: Receiver, settings: Any) -> None:
    """A refused connection is an attempt with no status code and the error text kept."""
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    WebhookEndpoint.objects.create(url=f"http://127.0.0.1:{port}/", secret="x", events=["room_started"])
    services.join("alice", "r4", "chan-a")
    wait_for(lambda: WebhookDelivery.objects.filter(status="failed").exists())
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_status_code is None and delivery.last_error


def test_the_endpoints_are_read_once_a_second_and_changes_here_seen_at_once(
    receiver: Receiver, django_assert_max_num_queries: Any
) -> None:
    """A process reads the active endpoints at most once per ENDPOINTS_TTL (not once per join of a big room); an
    endpoint saved or deleted in this process is seen at once, one added by another process (here: a bulk insert,
    which sends no signal) within that time."""
    webhooks.endpoints_cache.forget()
    assert webhooks.enqueue("room_started", {}) == []  # read: none
    with django_assert_max_num_queries(0):
        assert webhooks.enqueue("room_started", {}) == []
    WebhookEndpoint.objects.bulk_create([WebhookEndpoint(url=receiver.url + "?elsewhere", secret=SECRET)])
    assert webhooks.enqueue("room_started", {}) == []  # not yet
    deadline = time.monotonic() + webhooks.ENDPOINTS_TTL + 1.0
    while not webhooks.enqueue("room_started", {}):
        assert time.monotonic() < deadline, "the endpoint added elsewhere was never seen"
        time.sleep(0.1)
    elsewhere = WebhookEndpoint.objects.get(url=receiver.url + "?elsewhere")
    mine = endpoint(receiver, ["room_started"])
    assert {d.endpoint_id for d in webhooks.enqueue("room_started", {})} == {mine.pk, elsewhere.pk}
    mine.delete()
    assert len(webhooks.enqueue("room_started", {})) == 1


def test_an_endpoint_saved_by_another_process_is_seen_at_once(receiver: Receiver, settings: Any) -> None:
    """Another process that saves an endpoint bumps the version kept in Redis when it commits; this process, which
    has the list cached, reads it again at its next event instead of up to ENDPOINTS_TTL later."""
    if not settings.REDIS_URL:
        pytest.skip("the shared version lives in Redis: set REDIS_URL")
    webhooks.endpoints_cache.forget()
    assert webhooks.enqueue("room_started", {}) == []  # cached: none
    WebhookEndpoint.objects.bulk_create([WebhookEndpoint(url=receiver.url, secret=SECRET)])  # no signal here
    assert webhooks.enqueue("room_started", {}) == []  # still the cached list
    webhooks._bump_shared_version()  # what the other process's save does on commit
    assert len(webhooks.enqueue("room_started", {})) == 1
