"""Durable tasks: real task-worker processes (`manage.py runtasks`) killed mid-queue and started again.

Webhooks: while the receiver is down, the worker retries; it is killed (SIGKILL), more events are queued with no
worker up, the receiver comes back and the worker starts again under the same id: every event arrives exactly
once with a 2xx answer, in each room's order.  Mixes: the worker is killed in the middle of a mix; started again,
it runs the mix to the end, once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from rooms import services
from rooms.models import WebhookDelivery, WebhookEndpoint
from rooms.recording_models import Recording
from tests.servers import ROOT, subprocess_database_url
from tests.test_mixing import add_stream_recording, make_room, write_file

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 90.0


class WorkerProcess:
    """``manage.py runtasks --worker-id ID`` against the test database, its output in a temporary file."""

    def __init__(self, worker_id: str, env: dict[str, str]) -> None:
        handle, name = tempfile.mkstemp(prefix="runtasks-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "conference.settings", "PYTHONUNBUFFERED": "1",
                       "DATABASE_URL": subprocess_database_url(), "TASK_WORKER_INTERVAL": "0.1", **env}
        environment.pop("TEST_DB_NAME", None)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runtasks", "--worker-id", worker_id, "--no-startup-delay"],
                cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the worker and its children (an ffmpeg mix): no chance to finish or clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def log(self) -> str:
        """What the worker wrote."""
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test starts; all killed at the end."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()
        worker.log_path.unlink(missing_ok=True)


def wait_for(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``check`` until true (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Receiver:
    """A webhook receiver answering 503 while ``down``, else 200; it keeps (answer, body) in arrival order."""

    def __init__(self) -> None:
        self.down = True
        self.lock = threading.Lock()
        self.received: list[tuple[int, dict[str, Any]]] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with state.lock:
                    code = 503 if state.down else 200
                    state.received.append((code, body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """Where to POST."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def answered(self, code: int) -> list[dict[str, Any]]:
        """Bodies answered with ``code``."""
        with self.lock:
            return [body for answer, body in self.received if answer == code]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver, down at first."""
    running = Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


def lifecycle(room: str) -> None:
    """Two participants join, chat and leave: six events of one room (message_sent is opt-in)."""
    a = services.join("alice", room, f"{room}-a")
    b = services.join("bob", room, f"{room}-b")
    services.send_message(a.participant_id, "hello")
    services.leave(a.participant_id)
    services.leave(b.participant_id)


def test_webhooks_survive_a_killed_worker(receiver: Receiver, workers: list[WorkerProcess]) -> None:
    """Kill the worker while it retries a down receiver; queue more with no worker; restart it: every event is
    delivered exactly once, in each room's order."""
    WebhookEndpoint.objects.create(url=receiver.url, secret="s3cret")
    env = {"WEBHOOK_RETRY_BASE_SECONDS": "0.2", "WEBHOOK_MAX_ATTEMPTS": "1000", "WEBHOOK_TIMEOUT_SECONDS": "2"}
    for room in ("k1", "k2", "k3"):
        lifecycle(room)
    workers.append(WorkerProcess("tasks-1", env))
    wait_for(lambda: len(receiver.answered(503)) >= 6, "the worker to retry against the down receiver")
    workers[0].kill()
    open_rounds = list(DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING).values_list("pk", flat=True))
    for room in ("k4", "k5"):  # queued while no worker runs
        lifecycle(room)
    total = WebhookDelivery.objects.count()
    assert total == 5 * 6, total  # room_started, 2 joined, 2 left, room_finished (message_sent is opt-in)
    assert WebhookDelivery.objects.exclude(status=WebhookDelivery.Status.SUCCEEDED).count() == total

    receiver.down = False
    workers.append(WorkerProcess("tasks-1", env))
    wait_for(lambda: WebhookDelivery.objects.filter(status=WebhookDelivery.Status.SUCCEEDED).count() == total,
             "every delivery to succeed")
    time.sleep(1.0)  # a duplicate would arrive now
    delivered = receiver.answered(200)
    ids = [body["id"] for body in delivered]
    assert len(ids) == total and len(set(ids)) == total, "each event exactly once"
    expected = {str(d.event_id) for d in WebhookDelivery.objects.all()}
    assert set(ids) == expected
    for room in ("k1", "k2", "k3", "k4", "k5"):
        order = [
            str(event_id) for event_id in WebhookDelivery.objects.filter(payload__data__room__name=room)
            .order_by("pk").values_list("event_id", flat=True)
        ]
        arrived = [body["id"] for body in delivered if body["id"] in set(order)]
        assert arrived == order, f"room {room} out of order"
    assert receiver.answered(503), "the first worker did try while the receiver was down"
    if open_rounds:  # the round the killed worker was running was taken up again and finished
        wait_for(lambda: not DBTaskResult.objects.filter(pk__in=open_rounds).exclude(
            status=TaskResultStatus.SUCCESSFUL).exists(), "the stranded round to run again")


def test_a_mix_survives_a_killed_worker(settings: Any, tmp_path: Path, workers: list[WorkerProcess]) -> None:
    """Kill the worker in the middle of a mix (ffmpeg with it); started again under its id, the worker runs the
    mix again to the end: one mixed recording, done, with a readable file."""
    from rooms.recordings.mixing import enqueue_mix

    settings.RECORDINGS_DIR = tmp_path / "records"
    room = make_room("mix-kill", 12.0)
    for login, color, offset in (("alice", "red", 0.0), ("bob", "blue", 0.5)):
        recording = add_stream_recording(room, login, offset)
        write_file(recording, color, 10.0, 440)
    result = enqueue_mix(room.pk)
    env = {"RECORDINGS_DIR": str(settings.RECORDINGS_DIR), "RECORDING_MIX_WAIT_SECONDS": "0.5"}
    workers.append(WorkerProcess("tasks-mix", env))

    def mixing() -> bool:
        mixed = Recording.objects.filter(room=room, kind=Recording.Kind.MIXED).first()
        return mixed is not None and mixed.status == Recording.Status.RECORDING and mixed.progress > 0

    wait_for(mixing, "the mix to be under way")
    workers[0].kill()
    row = DBTaskResult.objects.get(pk=result.id)
    assert row.status == TaskResultStatus.RUNNING and row.worker_ids == ["tasks-mix"]

    workers.append(WorkerProcess("tasks-mix", env))
    wait_for(lambda: DBTaskResult.objects.get(pk=result.id).status == TaskResultStatus.SUCCESSFUL,
             "the mix task to finish", timeout=180)
    row = DBTaskResult.objects.get(pk=result.id)
    assert row.worker_ids == ["tasks-mix", "tasks-mix"], "claimed once per run"
    [mixed] = Recording.objects.filter(room=room, kind=Recording.Kind.MIXED)
    assert row.return_value == mixed.pk
    assert mixed.status == Recording.Status.DONE, mixed.reason
    assert mixed.progress == 100.0 and mixed.file_exists
    assert mixed.duration is not None and abs(mixed.duration - 10.5) <= 1.0, mixed.duration
    assert "run again" in workers[1].log()
