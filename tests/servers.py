"""Run a real daphne process for a test, on a free port, against the test database.

Usage (from a sync fixture that requests ``transactional_db``, so that the
test database exists and the server sees the test's rows)::

    with DaphneServer({"ROOM_IDLE_TIMEOUT": "1"}) as server:
        conn = await roomapi.connect(server.ws_url, "alice")

``server.http_url`` and ``server.ws_url`` are ``http://127.0.0.1:PORT`` and
``ws://127.0.0.1:PORT``.  The process gets the database pytest-django created
(DATABASE_URL), this process's REDIS_URL (if any) and ``env``; entering waits
(bounded) until ``/healthz`` answers, leaving kills the process.  Its output
goes to ``server.log_path``; it is in the RuntimeError when the server fails to
start, and logged at exit (pytest shows captured logs only for failed tests).
Outside ``with``: ``server.start()`` ... ``server.close()``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

from django.db import connection

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
# The Makefile's DAPHNE_WS_LIMITS: daphne's own 1 MiB message cap would cut MESSAGE_MAX_BYTES messages off.
DAPHNE_WS_LIMITS = ("--websocket-max-message-size", "2097152", "--websocket-max-frame-size", "2097152")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_database_url() -> str:
    """A DATABASE_URL naming the database this test process uses (the test database under pytest)."""
    settings = connection.settings_dict
    engine = settings["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        name = str(settings["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise RuntimeError("a daphne subprocess cannot share an in-memory SQLite database")
        return "sqlite:///" + str(Path(name).resolve())
    if engine in ("django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"):
        user = quote(str(settings.get("USER") or ""), safe="")
        password = quote(str(settings.get("PASSWORD") or ""), safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings.get("HOST") or "127.0.0.1"
        port = f":{settings['PORT']}" if settings.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(str(settings['NAME']), safe='')}"
    raise RuntimeError(f"unsupported database engine for a test server: {engine}")


class DaphneServer:
    """A daphne subprocess serving conference.asgi on 127.0.0.1 and a free port."""

    def __init__(self, env: dict[str, str] | None = None, *, start_timeout: float = START_TIMEOUT) -> None:
        self.env_overrides = dict(env or {})
        self.start_timeout = start_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        handle, name = tempfile.mkstemp(prefix="daphne-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT``: the base URL that roomapi.connect takes."""
        return f"ws://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The environment of the server process."""
        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = "conference.settings"
        env["DATABASE_URL"] = subprocess_database_url()
        env.pop("TEST_DB_NAME", None)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.env_overrides)
        return env

    def log_text(self) -> str:
        """What the server wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        """Start the process and wait until /healthz answers; raises RuntimeError with the log if not."""
        for _attempt in range(3):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    self.command(),
                    cwd=ROOT, env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_healthy():
                return
            if self.process.poll() is None:  # alive but silent: give up
                break
            # It died: most likely another process took the port in between; try another one.
        self.stop()
        raise RuntimeError(f"daphne did not start within {self.start_timeout} s; its log:\n{self.log_text()[-8000:]}")

    def _wait_healthy(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.healthy():
                return True
            time.sleep(0.1)
        return False

    def command(self) -> list[str]:
        """The server's command line (a subclass may wrap it, e.g. to run it in a network namespace)."""
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), *DAPHNE_WS_LIMITS,
                "conference.asgi:application"]

    def healthy(self) -> bool:
        """True when ``/healthz`` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Terminate the process (then kill it if it lingers)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the process and hand its log to logging (pytest shows it only for a failed test)."""
        self.stop()
        logger.warning("log of daphne on port %s:\n%s", self.port, self.log_text()[-8000:])
        self.log_path.unlink(missing_ok=True)


def collect_static(target: Path, *, timeout: float = 300.0) -> Path:
    """Run ``collectstatic`` into ``target`` as production does (STATIC_MANIFEST: hashed, compressed names).

    A server started with ``{"STATIC_ROOT": str(target), "STATIC_MANIFEST": "true"}`` then serves those files.
    """
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="conference.settings", STATIC_ROOT=str(target),
               STATIC_MANIFEST="true")
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"collectstatic failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return target
