"""Delete expired data: run it daily (cron, a systemd timer). Each step is one function of its own module."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand

from rooms import retention
from rooms.recordings import retention as recording_retention

logger = logging.getLogger(__name__)

#: The cleanup steps in order: (name, function returning how many rows or files it deleted).
STEPS: list[tuple[str, Callable[[], int]]] = [
    ("messages", retention.delete_expired_messages),
    ("webhook deliveries", retention.delete_old_webhook_deliveries),
    ("token revocations", retention.delete_expired_revocations),
    ("task results", retention.delete_finished_task_results),
    ("recordings", recording_retention.delete_expired_recordings),
]


class Command(BaseCommand):
    """Run every cleanup step; a failing step is logged and the others still run."""

    help = "Delete data past its retention: messages, webhook deliveries, token revocations, task results, recordings."

    def handle(self, *args: Any, **options: Any) -> None:
        failed = False
        for name, step in STEPS:
            try:
                deleted = step()
            except Exception:
                logger.exception("cleanup step %r failed", name)
                failed = True
                continue
            self.stdout.write(f"{name}: {deleted} deleted")
        if failed:
            raise SystemExit(1)
