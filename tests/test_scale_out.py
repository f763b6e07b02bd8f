"""Scale-out with real processes: `make run-cluster` and a Redis restart under live connections."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from tests.conftest import require_redis
from tests.media_sources import CounterVideoTrack, read_counter
from tests.servers import ROOT, DaphneServer, free_port, subprocess_database_url

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0


def wait_http(url: str, timeout: float = 60.0) -> None:
    """Poll an HTTP URL until it answers 200 (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout} s")
        time.sleep(0.2)


@pytest.fixture
def cluster(transactional_db: Any) -> Iterator[int]:
    """scripts/run_cluster.py with two daphne processes and one media worker; yields the base port."""
    require_redis()
    port = free_port()
    env = dict(os.environ, DATABASE_URL=subprocess_database_url(), DJANGO_SETTINGS_MODULE="conference.settings")
    env.pop("TEST_DB_NAME", None)
    handle, log_name = tempfile.mkstemp(prefix="cluster-", suffix=".log")
    os.close(handle)
    with open(log_name, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "scripts/run_cluster.py", "--daphne", "2", "--workers", "1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for backend in (port + 1, port + 2):
            wait_http(f"http://127.0.0.1:{backend}/healthz")
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield port
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        Path(log_name).unlink(missing_ok=True)


async def test_one_room_across_two_daphne_processes_with_media(cluster: int) -> None:
    """Participants on different daphne processes see each other's events, messages and media."""
    base = cluster
    ann = await roomapi.connect(f"ws://127.0.0.1:{base + 1}", "ann")
    bob = await roomapi.connect(f"ws://127.0.0.1:{base + 2}", "bob")
    cat = await roomapi.connect(f"ws://127.0.0.1:{base}", "cat")  # through the balancer
    room_a = await ann.join("cluster")
    room_b = await bob.join("cluster")
    room_c = await cat.join("cluster")
    await room_a.wait_for(ROOM_EVENT.JOINED, lambda e: e.participant.login == "bob", timeout=WAIT)
    await room_b.wait_for(ROOM_EVENT.JOINED, lambda e: e.participant.login == "cat", timeout=WAIT)
    await room_a.send_message("привет 你好 👋")
    got = await room_b.wait_for(ROOM_EVENT.MESSAGE, timeout=WAIT)
    assert got.message is not None and got.message.text == "привет 你好 👋"
    published = await room_a.publish(video=CounterVideoTrack())
    await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    event = await room_b.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    assert event.stream is not None
    play = await event.stream.play()
    numbers = [read_counter(await asyncio.wait_for(play.video.recv(), WAIT)) for _ in range(10)]
    assert numbers == sorted(numbers)
    await room_c.leave()
    await room_a.wait_for(ROOM_EVENT.LEFT, lambda e: e.participant.login == "cat", timeout=WAIT)
    for connection in (ann, bob, cat):
        await connection.disconnect()


class RedisServer:
    """A private redis-server on a free port, so restarting it disturbs nobody else."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


async def test_connections_recover_after_redis_restarts(transactional_db: Any) -> None:
    """Redis goes away and comes back: live connections carry on; rooms and stored messages remain."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    redis_server = RedisServer()
    redis_server.start()
    server = DaphneServer({"REDIS_URL": redis_server.url, "WS_GROUP_REFRESH_SECONDS": "1"})
    await asyncio.to_thread(server.start)
    try:
        ann = await roomapi.connect(server.ws_url, "ann")
        bob = await roomapi.connect(server.ws_url, "bob")
        room_a, room_b = await ann.join("restart"), await bob.join("restart")
        await room_a.send_message("before")
        await room_b.wait_for(ROOM_EVENT.MESSAGE, timeout=WAIT)

        redis_server.stop()
        await asyncio.sleep(1.5)
        redis_server.start()
        deadline = time.monotonic() + 30
        while True:  # the group membership is restored within WS_GROUP_REFRESH_SECONDS
            await room_a.send_message("after")
            try:
                got = await room_b.wait_for(ROOM_EVENT.MESSAGE, lambda e: e.message.text == "after", timeout=2)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "messages never flowed again after the restart"
        assert got.message is not None
        carl = await roomapi.connect(server.ws_url, "carl")
        room_c = await carl.join("restart")
        assert {p.login for p in room_c.get_participants()} == {"ann", "bob"}
        assert "before" in [m.text for m in room_c.history]
        for connection in (ann, bob, carl):
            await connection.disconnect()
    finally:
        await asyncio.to_thread(server.close)
        redis_server.stop()
