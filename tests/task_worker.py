"""The task worker inside a test: django-tasks-db's real Worker loop on a thread of the test process.

It runs the same code as ``manage.py runtasks`` (claims rows of the task table, runs them, records the result),
so tests exercise the durable path; the restart test (tests/test_tasks.py) runs real worker processes instead.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator

from django.db import connections
from django_tasks_db.management.commands.db_worker import Worker

_ids = itertools.count(1)


@contextlib.contextmanager
def running_worker(interval: float = 0.05, timeout: float = 30.0) -> Iterator[Worker]:
    """A worker on every queue until the block ends (then it finishes its task, at most ``timeout`` s)."""
    worker = Worker(
        queue_names=["*"], interval=interval, batch=False, backend_name="default", startup_delay=False,
        max_tasks=None, worker_id=f"test-worker-{next(_ids)}", excluded_queue_names=[],
    )

    def run() -> None:
        try:
            worker.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name=worker.worker_id, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.running = False
        thread.join(timeout)


def wait_task(result: object, timeout: float = 60.0) -> None:
    """Poll a task result (django-tasks) until it finished, at most ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        result.refresh()  # type: ignore[attr-defined]
        if result.is_finished:  # type: ignore[attr-defined]
            return
        assert time.monotonic() < deadline, "the task did not finish in time"
        time.sleep(0.1)
