"""Production observability (issue 14): the WebSocket gauge, errors by code, queue depths, media workers' figures
gathered through Redis, JSON logs with room and participant, and the Grafana dashboard's metric names."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from media_relay import metrics_publisher
from media_relay.logcontext import ContextFilter, JsonFormatter, bound
from rooms.models import WebhookDelivery, WebhookEndpoint
from rooms.recording_models import Recording
from tests.conftest import require_redis
from tests.roomclient import RoomClient
from tests.servers import ROOT
from tests.test_metrics import samples, scrape

pytestmark = pytest.mark.django_db(transaction=True)

DASHBOARD = ROOT / "deploy" / "grafana" / "conference.json"


async def test_websocket_gauge_and_errors_by_code(async_client: Any) -> None:
    """Open connections are counted while open; an error event sent is counted under its code."""

    async def scrape_async() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = await async_client.get("/metrics")
        assert response.status_code == 200
        return samples(response.content.decode())

    before = await scrape_async()
    errors_key = ("conference_errors_total", (("code", "not_joined"),))
    alice = await RoomClient.open("alice")
    bob = await RoomClient.open("bob")
    during = await scrape_async()
    assert during[("conference_websocket_connections", ())] == before[("conference_websocket_connections", ())] + 2
    reply = await alice.request({"type": "leave"})
    assert reply["type"] == "error" and reply["code"] == "not_joined"
    after_error = await scrape_async()
    assert after_error[errors_key] == before.get(errors_key, 0) + 1
    await alice.close()
    await bob.close()
    for _ in range(100):
        closed = await scrape_async()
        if closed[("conference_websocket_connections", ())] == before[("conference_websocket_connections", ())]:
            break
        await asyncio.sleep(0.05)
    assert closed[("conference_websocket_connections", ())] == before[("conference_websocket_connections", ())]


def test_queue_depths_and_mix_durations(client: Any) -> None:
    """Webhook deliveries by status, tasks by queue and status, and the done mixes' durations come from the
    database at scrape time."""
    from rooms.models import Room
    from rooms.webhooks import deliver_webhooks

    target = WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", secret="x")
    for status in ("pending", "pending", "failed", "succeeded"):
        WebhookDelivery.objects.create(endpoint=target, event_type="room_started", payload={}, status=status)
    deliver_webhooks.enqueue()
    room = Room.objects.create(name="metrics-mix", record=True, max_participants=10)
    started = timezone.now() - timezone.timedelta(seconds=12)
    Recording.objects.create(
        room=room,
        kind=Recording.Kind.MIXED,
        status=Recording.Status.DONE,
        started_at=started,
        finished_at=started + timezone.timedelta(seconds=4),
    )
    figures = scrape(client)
    assert figures[("conference_webhook_deliveries", (("status", "pending"),))] == 2
    assert figures[("conference_webhook_deliveries", (("status", "failed"),))] == 1
    assert figures[("conference_webhook_deliveries", (("status", "succeeded"),))] == 1
    assert figures[("conference_tasks", (("queue", "webhooks"), ("status", "ready")))] == 1
    assert figures[("conference_tasks", (("queue", "mixes"), ("status", "running")))] == 0
    assert figures[("conference_mix_duration_seconds_count", ())] == 1
    assert abs(figures[("conference_mix_duration_seconds_sum", ())] - 4.0) < 0.01


def test_media_workers_figures_from_redis(client: Any, settings: Any) -> None:
    """A worker's published hash shows up labelled with its id; one whose hash expired drops out."""
    require_redis()
    import redis

    async def publish() -> None:
        import redis.asyncio as aredis

        connection = aredis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        try:
            await metrics_publisher.publish(connection, "media-test")
        finally:
            await connection.aclose()

    sync = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        asyncio.run(publish())
        sync.hset(metrics_publisher.KEY.format("media-test"), mapping={"packets_received": "1234", "nacks_sent": "7"})
        sync.sadd(metrics_publisher.WORKERS, "media-gone")  # its hash expired
        figures = scrape(client)
        worker = (("worker", "media-test"),)
        assert figures[("conference_media_worker_packets_received_total", worker)] == 1234
        assert figures[("conference_media_worker_nacks_sent_total", worker)] == 7
        assert ("conference_media_worker_peer_connections", worker) in figures
        assert ("conference_media_worker_packets_received_total", (("worker", "media-gone"),)) not in figures
        assert not sync.sismember(metrics_publisher.WORKERS, "media-gone")
        assert figures[("conference_media_workers_reporting", ())] >= 1
        assert 0 < sync.ttl(metrics_publisher.KEY.format("media-test")) <= settings.MEDIA_METRICS_TTL
    finally:
        sync.delete(metrics_publisher.KEY.format("media-test"))
        sync.srem(metrics_publisher.WORKERS, "media-test", "media-gone")
        sync.close()


def test_json_formatter_fields() -> None:
    """One JSON object: time, level, logger, message; the bound context; nothing unknown."""
    record = logging.LogRecord("rooms.services", logging.WARNING, __file__, 1, "joined %s", ("r1",), None)
    with bound(room="r1", participant="alice", request_id=7):
        ContextFilter().filter(record)
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["level"] == "WARNING" and data["logger"] == "rooms.services" and data["message"] == "joined r1"
    assert data["room"] == "r1" and data["participant"] == "alice" and data["request_id"] == "7"
    assert "room_id" not in data and re.match(r"\d{4}-\d\d-\d\dT", data["time"])


def test_json_logs_of_a_real_server_carry_room_and_participant(tmp_path: Path) -> None:
    """LOG_FORMAT=json in a real process: a join logged inside the consumer carries the room and participant;
    every line is one JSON object."""
    script = tmp_path / "join.py"
    script.write_text(
        "import asyncio, logging\n"
        "import django\n"
        "django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "from tests.roomclient import RoomClient\n"
        "async def main():\n"
        "    c = await RoomClient.open('alice')\n"
        "    await c.join('json-room')\n"
        "    await c.request({'type': 'send_message', 'text': 'hi'})\n"
        "    logging.getLogger('rooms.test').info('outside any connection')\n"
        "    await c.close()\n"
        "asyncio.run(main())\n"
    )
    db = tmp_path / "db.sqlite3"
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "DATABASE_URL": f"sqlite:///{db}",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    in_room = [r for r in records if r.get("room") == "json-room"]
    assert any(r["message"] == "alice joined room json-room" for r in in_room), records[:40]
    assert all(r.get("participant") == "alice" for r in in_room)
    outside = [r for r in records if r["message"] == "outside any connection"]
    assert outside and "room" not in outside[0]


def test_dashboard_metrics_exist(client: Any) -> None:
    """Every expression of the Grafana dashboard names metrics that /metrics exposes (with media workers)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 10
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    # Sample names, and the families declared with no sample yet (errors before the first one, media workers before
    # one reports): their TYPE line names them as they will be sampled.
    exposed = {name for name, _labels in samples(text)} | set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    functions = {
        "sum",
        "rate",
        "irate",
        "increase",
        "by",
        "without",
        "histogram_quantile",
        "max",
        "min",
        "avg",
        "count",
        "clamp_min",
        "on",
        "ignoring",
        "le",
        "worker",
        "code",
        "status",
        "queue",
        "state",
        "and",
        "or",
        "unless",
        "offset",
        "topk",
        "deriv",
        "delta",
        "instance",
    }
    for expr in exprs:
        stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
        names = {n for n in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped) if n not in functions}
        assert names, expr
        for name in names:
            assert name in exposed, f"{name} (in {expr!r}) is not in /metrics"


def test_http_requests_get_a_request_id(client: Any) -> None:
    """nginx's X-Request-ID (or a new id) is echoed and bound while Django handles the request."""
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory

    from conference.request_id import RequestIdMiddleware
    from media_relay.logcontext import current

    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\n<script>")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    seen: dict[str, str] = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen.update(current())
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="r-9"))
    assert seen == {"request_id": "r-9"} and response["X-Request-ID"] == "r-9"  # type: ignore[index]
    assert "request_id" not in current()


async def test_middleware_works_around_async_views_too() -> None:
    """The same middleware on the async path: the id is bound while the view runs and echoed; a recording
    FileResponse becomes an X-Accel-Redirect answer when the setting is on."""
    from django.http import FileResponse, HttpRequest, HttpResponse
    from django.test import RequestFactory, override_settings

    from conference.accel import AccelRedirectMiddleware
    from conference.request_id import RequestIdMiddleware
    from media_relay.logcontext import current

    seen: dict[str, str] = {}

    async def view(request: HttpRequest) -> HttpResponse:
        seen.update(current())
        return HttpResponse("ok")

    response = await RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="a-1"))  # type: ignore[misc]
    assert seen == {"request_id": "a-1"} and response["X-Request-ID"] == "a-1"

    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "r").mkdir()
        (Path(root) / "r" / "one.webm").write_bytes(b"media")

        async def download(request: HttpRequest) -> FileResponse:
            return FileResponse(open(Path(root) / "r" / "one.webm", "rb"), content_type="video/webm")

        with override_settings(RECORDINGS_DIR=root, RECORDINGS_ACCEL_REDIRECT="/_recordings/"):
            answer = await AccelRedirectMiddleware(download)(RequestFactory().get("/"))  # type: ignore[misc]
        assert answer["X-Accel-Redirect"] == "/_recordings/r/one.webm" and answer["Content-Type"] == "video/webm"
        with override_settings(RECORDINGS_DIR=root, RECORDINGS_ACCEL_REDIRECT=""):
            kept = await AccelRedirectMiddleware(download)(RequestFactory().get("/"))  # type: ignore[misc]
        assert isinstance(kept, FileResponse) and "X-Accel-Redirect" not in kept
        kept.close()
