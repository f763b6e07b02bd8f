"""The smaller findings of issue 11, item 9: each its own hostile test.

(The SDK size check of item 9 is in test_chat_volume.py; HSTS and secure cookies are also covered by
test_signing_key.py's `check --deploy` test.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from rooms import webhooks
from rooms.models import APIKey, Room, WebhookDelivery, WebhookEndpoint
from tests.roomclient import RoomClient
from tests.security.test_signing_key import PRODUCTION_ENV
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


async def test_a_moderator_cannot_raise_max_participants_past_the_limit() -> None:
    """Finding 9: `moderate set_max_participants 100000` is refused (invalid_field) or clamped: the room's limit
    never exceeds ROOM_MAX_PARTICIPANTS_LIMIT."""
    alice = await RoomClient.open("alice")
    assert (await alice.join("huge"))["self"]["role"] == "moderator"
    reply = await alice.request({"type": "moderate", "action": "set_max_participants", "max_participants": 100_000})
    assert reply["type"] in ("ack", "error"), reply
    limit = await db(lambda: Room.objects.get(name="huge").max_participants)()
    assert limit <= django_settings.ROOM_MAX_PARTICIPANTS_LIMIT, limit
    if reply["type"] == "error":
        assert reply["code"] == "invalid_field" and str(django_settings.ROOM_MAX_PARTICIPANTS_LIMIT) in reply["message"]
    await alice.close()


def staff_client() -> Client:
    """A logged-in superuser."""
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


async def test_a_login_with_a_slash_can_be_kicked_and_administered() -> None:
    """Finding 9: a participant named `a/b` (if such a login is accepted at all) can be kicked over REST and its
    room's admin page renders (was 404 and 500)."""
    slash = await RoomClient.connect()
    hello = await slash.request({"type": "hello", "version": 1, "username": "a/b"})
    if hello["type"] == "failed":  # refusing such logins outright is a fix too
        assert hello["code"] == "invalid_username"
        return
    await slash.join("slashed")
    room = await db(Room.objects.get)(name="slashed")
    page = await db(lambda: staff_client().get(f"/admin/rooms/room/{room.pk}/change/"))()
    assert page.status_code == 200

    def kick() -> int:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Api-Key {APIKey.create_key('tests')[1]}")
        return int(api.post(f"/api/rooms/slashed/participants/{quote('a/b', safe='')}/kick").status_code)

    assert await db(kick)() in (200, 204)  # the REST kick answers 204 No Content
    assert (await slash.until("kicked"))["type"] == "kicked"
    await slash.close()


class Receiver:
    """A webhook receiver on loopback; POSTs to ``/slow`` wait until ``release`` is set (bounded)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with state.lock:
                    state.paths.append(self.path)
                if self.path == "/slow":
                    state.release.wait(20)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        """The URL of ``path`` on this receiver."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def got(self, path: str) -> bool:
        """True once ``path`` was posted to."""
        with self.lock:
            return path in self.paths


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    """A running receiver; the deliverer thread stopped afterwards."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 25
    running = Receiver()
    yield running
    running.release.set()
    webhooks.stop()
    running.server.shutdown()
    running.server.server_close()


def endpoint(url: str) -> WebhookEndpoint:
    """An active endpoint for every event."""
    return WebhookEndpoint.objects.create(url=url, secret="s3cret")


def test_a_churning_room_does_not_starve_the_others(receiver: Receiver) -> None:
    """Finding 9: 2,500 queued deliveries of one room ahead of one of another room: the first delivery round
    sends the other room's event too (the scan was cut at 2,000 rows)."""
    target = endpoint(receiver.url("/hook"))
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(endpoint=target, event_type="message_sent", sequence_key="room:1", payload={"n": n})
        for n in range(2500)
    )
    other = WebhookDelivery.objects.create(
        endpoint=target, event_type="room_started", sequence_key="room:2", payload={"other": True}
    )
    webhooks.deliver_due()
    other.refresh_from_db()
    assert other.status == WebhookDelivery.Status.SUCCEEDED, other.status


def test_a_slow_receiver_does_not_stall_the_others(receiver: Receiver) -> None:
    """Finding 9: while one receiver holds its request open, another endpoint's delivery of the same round
    still arrives (deliveries were sent one at a time)."""
    slow, fast = endpoint(receiver.url("/slow")), endpoint(receiver.url("/fast"))
    for target, key in ((slow, "room:1"), (fast, "room:2")):
        WebhookDelivery.objects.create(endpoint=target, event_type="room_started", sequence_key=key, payload={})
    sender = threading.Thread(target=webhooks.deliver_due, daemon=True)
    sender.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (receiver.got("/slow") and receiver.got("/fast")):
        time.sleep(0.05)
    arrived = receiver.got("/fast")
    receiver.release.set()
    sender.join(30)
    assert arrived, "the fast receiver waited for the slow one"


def test_old_delivered_webhooks_are_deleted(settings: Any) -> None:
    """Finding 9: `manage.py cleanup` deletes finished deliveries older than WEBHOOK_RETENTION_DAYS; recent and
    pending ones stay."""
    settings.WEBHOOK_RETENTION_DAYS = 7
    target = endpoint("http://127.0.0.1:9/hook")
    done = WebhookDelivery.Status.SUCCEEDED
    old = WebhookDelivery.objects.create(endpoint=target, event_type="x", payload={}, status=done)
    recent = WebhookDelivery.objects.create(endpoint=target, event_type="x", payload={}, status=done)
    waiting = WebhookDelivery.objects.create(endpoint=target, event_type="x", payload={})
    WebhookDelivery.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=8), delivered_at=timezone.now() - timedelta(days=8)
    )
    WebhookDelivery.objects.filter(pk=recent.pk).update(delivered_at=timezone.now())
    call_command("cleanup")
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {recent.pk, waiting.pk}


def test_production_sends_hsts_and_redirects_to_https(transactional_db: Any, collected_static: Path) -> None:
    """Finding 9: a real daphne with the documented production environment (behind its proxy on 127.0.0.1)
    answers HTTPS requests with Strict-Transport-Security and redirects plain HTTP to HTTPS."""
    env = {**PRODUCTION_ENV, "ALLOWED_HOSTS": "127.0.0.1", "STATIC_ROOT": str(collected_static)}
    with DaphneServer(env) as server:
        secure = requests.get(f"{server.http_url}/conference/", headers={"X-Forwarded-Proto": "https"},
                              timeout=10, allow_redirects=False)
        assert secure.status_code == 200
        assert "max-age=31536000" in secure.headers.get("Strict-Transport-Security", "")
        plain = requests.get(f"{server.http_url}/conference/", timeout=10, allow_redirects=False)
        assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
        assert requests.get(f"{server.http_url}/healthz", timeout=10, allow_redirects=False).status_code == 200
