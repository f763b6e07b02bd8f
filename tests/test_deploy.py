"""The production stack for real: Debian's nginx in front of supervisord's daphne x 2 and runmedia x 2.

`scripts/deploy.py run` (what `make run-cluster` runs) renders deploy/ into a temporary state directory and
starts nginx and supervisord on loopback ports as this user. Through it: a three-person room with media
(signalling over plain HTTP and over TLS), the per-address cap counting real client addresses (clients on
127.0.0.2 and 127.0.0.3, which are not exempt), a forged X-Forwarded-For that does not pass for loopback,
static files and a recording sent by nginx itself.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from tests.conftest import require_redis
from tests.media_sources import CounterVideoTrack, ToneAudioTrack, read_counter
from tests.servers import ROOT, free_port, subprocess_database_url

WAIT = 20.0
START_TIMEOUT = 150.0
# The stack starts in the setup of the first test that uses it (module fixture), and pytest-timeout counts setup:
# under load the start alone (migrate, five Python processes, nginx) takes most of the default 120 s, which then
# ran out inside the media test's DTLS handshake. Bound each test by the stack's start plus its own waits.
pytestmark = pytest.mark.timeout(START_TIMEOUT + 6 * WAIT)
CAP = 2  # WS_MAX_CONNECTIONS_PER_IP of the stack


def load_deploy() -> ModuleType:
    """scripts/deploy.py as a module."""
    spec = importlib.util.spec_from_file_location("deploy_script", ROOT / "scripts" / "deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nginx_binary() -> str:
    """Debian's nginx; fails under CI, skips elsewhere when it is missing."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary:
        return binary
    if os.environ.get("CI") == "true":
        pytest.fail("nginx is required under CI: scripts/system-deps.sh installs it")
    pytest.skip("needs nginx (scripts/system-deps.sh installs Debian's)")


def test_env_example_lists_every_setting() -> None:
    """.env.example names every setting conference/settings.py reads from the environment, and nothing else."""
    settings_source = (ROOT / "conference/settings.py").read_text()
    read = set(re.findall(r'env_(?:str|int|float|bool|list)\("([A-Z0-9_]+)"', settings_source))
    listed = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read - listed == set(), "settings missing from .env.example"
    assert listed - read == set(), ".env.example names settings that do not exist"


def test_rendered_production_config_passes_nginx_t(tmp_path: Path) -> None:
    """`deploy.py render` with production values gives a site nginx accepts (`nginx -t`), redirecting HTTP."""
    nginx = nginx_binary()
    deploy = load_deploy()
    subprocess.run([sys.executable, "manage.py", "makecert", "--dir", str(tmp_path / "certs")], cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    out = tmp_path / "conf"
    args = deploy.parse_args([
        "render", "--out", str(out), "--conf-dir", str(out), "--server-name", "rooms.example.org",
        "--tls-cert", str(tmp_path / "certs/cert.pem"), "--tls-key", str(tmp_path / "certs/key.pem"),
        "--daphnes", "3", "--workers", "2",
    ])
    deploy.render(args, out, out)
    site = (out / "nginx.conf").read_text()
    assert site.count("server 127.0.0.1:800") == 3 and "return 301 https://$host$request_uri;" in site
    supervisord = (out / "supervisord.conf").read_text()
    assert "numprocs=3" in supervisord and "[program:task-worker]" in supervisord and "runtasks" in supervisord
    compose = deploy.parse_args(["render", "--out", str(tmp_path / "compose"), "--upstream", "web-1:8000",
                                 "--upstream", "web-2:8000"])
    deploy.render(compose, tmp_path / "compose")
    upstream = (tmp_path / "compose" / "nginx.conf").read_text()
    assert "server web-1:8000" in upstream and "server web-2:8000" in upstream and "127.0.0.1:800" not in upstream
    for sub in ("run", "log", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "main.conf").write_text(deploy.nginx_main(tmp_path, out / "nginx.conf"))
    result = subprocess.run([nginx, "-t", "-c", str(tmp_path / "main.conf"), "-p", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- the running stack -------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """The stack's addresses and directories."""

    port: int
    tls_port: int
    daphne_ports: list[int]
    state: Path
    recordings: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive free TCP ports on 127.0.0.1."""
    deploy = load_deploy()
    for _ in range(200):
        base = random.randint(20000, 40000)
        if deploy.ports_free("127.0.0.1", list(range(base, base + count))):
            return base
    raise RuntimeError("no consecutive free ports")


def flush_database() -> None:
    """Empty the test database the stack wrote to (as TransactionTestCase does)."""
    from django.core.management import call_command
    from django.db import connections

    try:
        call_command("flush", interactive=False, verbosity=0, reset_sequences=False)
    finally:
        connections.close_all()


@pytest.fixture(scope="module")
def stack(django_db_setup: Any, django_db_blocker: Any, collected_static: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`scripts/deploy.py run`: nginx + supervisord (2 daphne, 2 media workers) against the test database."""
    require_redis()
    nginx_binary()
    state = tmp_path_factory.mktemp("stack")
    recordings = tmp_path_factory.mktemp("recordings")
    port, tls_port, base = free_port(), free_port(), consecutive_free_ports(2)
    with django_db_blocker.unblock():
        database_url = subprocess_database_url()
    env = dict(os.environ, DATABASE_URL=database_url, STATIC_ROOT=str(collected_static),
               RECORDINGS_DIR=str(recordings), WS_MAX_CONNECTIONS_PER_IP=str(CAP), ROOM_IDLE_TIMEOUT="2",
               LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", MEDIA_METRICS_INTERVAL="1", LOG_FORMAT="json",
               TASK_WORKER_INTERVAL="0.2")
    env.pop("TEST_DB_NAME", None)
    log = (state / "deploy.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "scripts/deploy.py", "run", "--port", str(port), "--tls-port", str(tls_port),
         "--daphne-port", str(base), "--daphnes", "2", "--workers", "2", "--state-dir", str(state),
         "--no-collectstatic"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, f"deploy.py run exited:\n{(state / 'deploy.log').read_text()[-6000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            log_tail = (state / "deploy.log").read_text()[-6000:]
            assert time.monotonic() < deadline, f"no answer through nginx:\n{log_tail}"
            time.sleep(0.5)
        yield Stack(port, tls_port, [base, base + 1], state, recordings)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
        with django_db_blocker.unblock():
            flush_database()


def daphne_logs(stack: Stack) -> dict[int, str]:
    """Each daphne's log (supervisord's childlogdir)."""
    return {port: (stack.state / "log" / f"daphne-{port}.log").read_text(errors="replace")
            for port in stack.daphne_ports}


def published_by(login: str) -> Callable[[Any], bool]:
    """A PUBLISHED-event filter for ``login``'s streams."""
    return lambda event: event.participant is not None and event.participant.login == login


async def test_three_person_room_with_media_through_nginx(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three participants (one over HTTP, two over TLS) publish and each plays the two others through the stack."""
    monkeypatch.setenv("SSL_CERT_FILE", str(stack.state / "certs" / "cert.pem"))  # trust the self-signed cert
    urls = {"ann": f"ws://127.0.0.1:{stack.port}", "bob": f"wss://127.0.0.1:{stack.tls_port}",
            "cat": f"wss://127.0.0.1:{stack.tls_port}"}
    connections = {name: await roomapi.connect(url, name) for name, url in urls.items()}
    try:
        rooms = {name: await conn.join("deploy-media") for name, conn in connections.items()}
        sources = {name: CounterVideoTrack() for name in urls}
        published = [await rooms[name].publish(video=sources[name], audio=ToneAudioTrack()) for name in urls]
        for stream in published:
            await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
        playing = {}
        for viewer in urls:
            for publisher in urls:
                if viewer == publisher:
                    continue
                participant = rooms[viewer].get_participant(publisher)
                if participant is None or not participant.get_streams():
                    await rooms[viewer].wait_for(ROOM_EVENT.PUBLISHED, published_by(publisher), timeout=WAIT)
                    participant = rooms[viewer].get_participant(publisher)
                assert participant is not None
                playing[(viewer, publisher)] = await participant.get_streams()[0].play()

        async def frames(play: Any) -> list[int]:
            return [read_counter(await play.video.recv()) for _ in range(15)]

        results = await asyncio.wait_for(asyncio.gather(*(frames(p) for p in playing.values())), 3 * WAIT)
        for numbers in results:
            assert numbers == sorted(numbers) and len(set(numbers)) >= 13
    finally:
        for conn in connections.values():
            await conn.disconnect()
    logs = daphne_logs(stack)
    assert all("WSCONNECT /ws/" in text for text in logs.values()), "nginx did not spread WebSockets over both daphnes"


async def hello(source: str, stack: Stack, login: str) -> Any:
    """A raw WebSocket from ``source`` through nginx that said hello; the open connection."""
    ws = await ws_connect(f"ws://127.0.0.1:{stack.port}/ws/", origin=websockets.typing.Origin(stack.http_url),
                          local_addr=(source, 0), open_timeout=WAIT)
    await ws.send(json.dumps({"type": "hello", "version": 1, "username": login, "rid": 1}))
    return ws


async def test_per_address_cap_counts_real_client_addresses(stack: Stack) -> None:
    """Behind nginx the cap sees each client's own address: 127.0.0.2 is capped, 127.0.0.3 is not."""
    opened = []
    try:
        for i in range(CAP):
            ws = await hello("127.0.0.2", stack, f"capped{i}")
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "established"
            opened.append(ws)
        with pytest.raises(ConnectionClosed) as closed:  # accepted, then closed (the hello may not even go out)
            over = await hello("127.0.0.2", stack, "over")
            opened.append(over)
            async with asyncio.timeout(WAIT):
                while True:
                    await over.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        other = await hello("127.0.0.3", stack, "other")
        opened.append(other)
        assert json.loads(await asyncio.wait_for(other.recv(), WAIT))["type"] == "established"
    finally:
        for ws in opened:
            await ws.close()


def get(stack: Stack, path: str, *, source: str = "127.0.0.1", headers: dict[str, str] | None = None,
        port: int | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET through nginx (or a daphne ``port``) from ``source``: status, headers (lower-case), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port or stack.port, timeout=WAIT, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def metric_samples(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics through nginx (from loopback), parsed."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = get(stack, "/metrics")
    assert status == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def per_worker(figures: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> dict[str, float]:
    """One media-worker metric's value by worker label."""
    return {dict(labels)["worker"]: value for (sample, labels), value in figures.items()
            if sample == f"conference_media_worker_{name}" and dict(labels).get("worker")}


async def test_metrics_show_each_media_worker(stack: Stack) -> None:
    """The runmedia workers' counters reach /metrics (through Redis), labelled by worker: packets and bytes in and
    out, NACK/PLI counters and peers of the worker serving a live room.

    The counters are the workers' totals since they started, so the worker serving this room is the one whose
    forwarded packets grew since the room began (an earlier test's room may have used the other one); a small room
    is placed on one worker (MEDIA_CASCADE_AFTER), so that worker counts both of its peer connections."""
    before = per_worker(await asyncio.to_thread(metric_samples, stack), "packets_forwarded_total")
    ann = await roomapi.connect(f"ws://127.0.0.1:{stack.port}", "mia")
    ben = await roomapi.connect(f"ws://127.0.0.1:{stack.port}", "max")
    try:
        room_a, room_b = await ann.join("deploy-metrics"), await ben.join("deploy-metrics")
        stream = await room_a.publish(video=CounterVideoTrack(), audio=ToneAudioTrack())
        await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
        participant = room_b.get_participant("mia")
        if participant is None or not participant.get_streams():
            await room_b.wait_for(ROOM_EVENT.PUBLISHED, published_by("mia"), timeout=WAIT)
            participant = room_b.get_participant("mia")
        assert participant is not None
        play = await participant.get_streams()[0].play()
        await asyncio.wait_for(play.video.recv(), WAIT)
        deadline = time.monotonic() + 3 * WAIT
        while True:
            figures = await asyncio.to_thread(metric_samples, stack)
            forwarded, peers = per_worker(figures, "packets_forwarded_total"), per_worker(figures, "peer_connections")
            serving = [w for w, value in forwarded.items() if value - before.get(w, 0) > 50 and peers.get(w, 0) >= 2]
            if serving:
                break
            assert time.monotonic() < deadline, {k: v for k, v in figures.items() if "worker" in k[0]}
            await asyncio.sleep(0.5)
    finally:
        await ann.disconnect()
        await ben.disconnect()
    assert figures[("conference_media_workers_reporting", ())] == 2
    assert set(per_worker(figures, "packets_received_total")) == {"media-1", "media-2"}
    assert len(serving) == 1, (before, forwarded, peers)  # the room's publisher and player are on one worker
    worker = (("worker", serving[0]),)
    assert figures[("conference_media_worker_packets_received_total", worker)] > 50
    assert figures[("conference_media_worker_bytes_received_total", worker)] > 0
    assert figures[("conference_media_worker_bytes_forwarded_total", worker)] > 0
    for name in ("nacks_sent", "nacks_received", "plis_sent", "plis_received"):
        assert (f"conference_media_worker_{name}_total", worker) in figures
    assert figures[("conference_media_worker_plis_sent_total", worker)] >= 0
    assert figures[("conference_websocket_connections", ())] >= 0


def test_task_worker_delivers_webhooks(stack: Stack, django_db_blocker: Any) -> None:
    """The stack's task worker (supervisord's task-worker) delivers a room's webhooks; daphne only queues them."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with django_db_blocker.unblock():
            from django.db import connections

            from rooms.models import WebhookEndpoint

            WebhookEndpoint.objects.create(url=f"http://127.0.0.1:{server.server_address[1]}/hook", secret="x",
                                           events=["room_started"])
            connections.close_all()

        async def join() -> None:
            conn = await roomapi.connect(f"ws://127.0.0.1:{stack.port}", "wes")
            try:
                await conn.join("deploy-webhooks")
            finally:
                await conn.disconnect()

        asyncio.run(join())
        deadline = time.monotonic() + 3 * WAIT
        while not any(event["data"]["room"]["name"] == "deploy-webhooks" for event in received):
            assert time.monotonic() < deadline, (stack.state / "log" / "task-worker-1.log").read_text()[-3000:]
            time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
    log = (stack.state / "log" / "task-worker-1.log").read_text()
    assert "deliver_webhooks" in log or "rooms.webhooks" in log, log[-2000:]


def test_forged_forwarded_for_does_not_pass_for_loopback(stack: Stack) -> None:
    """/metrics is open to loopback only: a remote client claiming 127.0.0.1 in X-Forwarded-For stays remote."""
    assert get(stack, "/metrics")[0] == 200
    status, _, _ = get(stack, "/metrics", source="127.0.0.2", headers={"X-Forwarded-For": "127.0.0.1"})
    assert status == 403


def test_static_files_are_sent_by_nginx(stack: Stack) -> None:
    """Hashed static files come from STATIC_ROOT through nginx: cached for good and gzip-compressed."""
    _, _, page = get(stack, "/conference/")
    script = re.search(rb'src="(/static/rooms/conference\.[0-9a-f]{12}\.js)"', page)
    assert script, page[:2000]
    status, headers, _ = get(stack, script[1].decode(), headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("content-encoding") == "gzip"
    assert "immutable" in headers.get("cache-control", "") and "2037" in headers.get("expires", "")
    status, headers, body = get(stack, "/static/rooms/roomapi.js")
    assert status == 200 and b"export function connect" in body and "immutable" not in headers.get("cache-control", "")


@pytest.mark.django_db(transaction=True)
def test_recordings_are_sent_by_nginx(stack: Stack) -> None:
    """A download is authorised by Django, which answers X-Accel-Redirect; nginx sends the file from disk."""
    from rooms.models import APIKey, Recording, Room

    room = Room.objects.create(name="deploy-rec", max_participants=4)
    (stack.recordings / "deploy").mkdir(exist_ok=True)
    content = os.urandom(200_000)
    (stack.recordings / "deploy" / "one.webm").write_bytes(content)
    recording = Recording.objects.create(room=room, kind="stream", file_name="deploy/one.webm", status="done")
    key = APIKey.create_key("deploy")[1]
    path = f"/api/recordings/{recording.public_id}/download"
    auth = {"Authorization": f"Api-Key {key}"}
    assert get(stack, path)[0] in (401, 403)
    status, headers, body = get(stack, path, headers=auth)
    assert status == 200 and body == content
    assert "attachment" in headers.get("content-disposition", "") and "x-accel-redirect" not in headers
    status, headers, body = get(stack, path, headers=auth, port=stack.daphne_ports[0])
    assert status == 200 and headers.get("x-accel-redirect") == "/_recordings/deploy/one.webm" and body == b""


def test_tls_block_serves_the_site(stack: Stack) -> None:
    """The HTTPS server block answers with the certificate from `manage.py makecert`."""
    context = ssl.create_default_context(cafile=str(stack.state / "certs" / "cert.pem"))
    deadline = time.monotonic() + WAIT
    while True:  # the readiness probe may answer 503 for a moment (a slow channel-layer round trip): bounded retry
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{stack.tls_port}/healthz", timeout=WAIT,
                                        context=context) as r:
                assert r.status == 200 and r.headers.get("Strict-Transport-Security")
                return
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_supervisord_runs_every_program(stack: Stack) -> None:
    """supervisorctl reports both daphne processes, both media workers and the task worker RUNNING."""
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "supervisorctl"), "-c",
                             str(stack.state / "conf" / "supervisord.conf"), "status"],
                            capture_output=True, text=True, timeout=60)
    states = dict(line.split()[:2] for line in result.stdout.splitlines() if line.strip())
    expected = {f"daphne:daphne-{port}" for port in stack.daphne_ports} | {
        "runmedia:runmedia-1", "runmedia:runmedia-2", "task-worker:task-worker-1"}
    assert {name for name, state in states.items() if state == "RUNNING"} == expected, result.stdout
