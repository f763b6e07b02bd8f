"""Real `manage.py runmedia` workers for tests: one process, the live registry, a daphne with N workers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from tests.conftest import require_redis
from tests.servers import ROOT, DaphneServer

# The registry keys a test cluster starts without (stale entries of an earlier run would attract placements).
REGISTRY_PATTERNS = ("media:room:*", "media:stream:*", "media:pc:*")


class MediaWorkerProcess:
    """A `manage.py runmedia` subprocess with the test server's environment."""

    def __init__(self, env: dict[str, str], worker_id: str, args: tuple[str, ...] = ()) -> None:
        handle, name = tempfile.mkstemp(prefix=f"runmedia-{worker_id}-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runmedia", "--worker-id", worker_id, *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        """Terminate (then kill) the worker."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        logging.getLogger(__name__).warning("log of %s:\n%s", self.log_path, self.log_path.read_text()[-6000:])
        self.log_path.unlink(missing_ok=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def live_workers(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Workers alive in the registry: announced, and heard from (their heartbeat thread's `media:alive` stamp or
    their loop's own announce) within the last few seconds."""
    now = time.time()
    beats = {_text(k): float(v) for k, v in client.hgetall("media:alive").items()}
    workers = {_text(k): json.loads(v) for k, v in client.hgetall("media:workers").items()}
    return {k: v for k, v in workers.items() if now - max(v["seen"], beats.get(k, 0.0)) < 6}


@contextmanager
def media_cluster(
    settings: dict[str, str], worker_ids: tuple[str, ...], worker_args: tuple[str, ...] = ()
) -> Iterator[tuple[DaphneServer, redis.Redis]]:
    """daphne in MEDIA_MODE=workers (plus ``settings``) and one runmedia per id (with ``worker_args``), all on
    REDIS_URL's Redis, from an empty registry; waits (bounded) until every worker announced itself."""
    require_redis()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete("media:workers", "media:alive", "media:reaped")
    for pattern in REGISTRY_PATTERNS:
        for key in client.scan_iter(pattern):
            client.delete(key)
    server = DaphneServer({"MEDIA_MODE": "workers", **settings})
    server.start()
    workers = [MediaWorkerProcess(server.environment(), worker_id, worker_args) for worker_id in worker_ids]
    try:
        deadline = time.monotonic() + 30
        while len(live_workers(client)) < len(workers):
            assert time.monotonic() < deadline, "media workers did not announce themselves"
            assert all(w.process.poll() is None for w in workers), [w.log_path.read_text() for w in workers]
            time.sleep(0.2)
        yield server, client
    finally:
        for worker in workers:
            worker.stop()
        server.close()
