"""``manage.py cleanup``: delete what is past its retention (run it daily, e.g. from cron or a systemd timer).

Each step is a function in its own module that deletes one kind of expired data
and returns how many items it removed; add a step by adding a line to STEPS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

#: (name, dotted path of a function taking no arguments and returning the number of items deleted).
STEPS: tuple[tuple[str, str], ...] = (
    ("recordings", "rooms.recordings.retention.delete_expired_recordings"),
)


class Command(BaseCommand):
    """Run every cleanup step (or those named with --only) and say how much each deleted."""

    help = "Delete expired data: recordings past RECORDING_RETENTION_DAYS (files and rows), and the other steps."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--only", action="append", choices=[name for name, _ in STEPS],
                            help="run only this step (repeatable)")

    def handle(self, *args: Any, **options: Any) -> None:
        only = set(options.get("only") or ())
        for name, path in STEPS:
            if only and name not in only:
                continue
            step: Callable[[], int] = import_string(path)
            count = step()
            logger.info("cleanup %s: %d deleted", name, count)
            self.stdout.write(f"{name}: {count} deleted")
