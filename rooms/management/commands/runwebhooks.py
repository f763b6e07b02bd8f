"""Deliver queued webhooks in the foreground (optional: daphne already delivers in a background thread)."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connections

from rooms import webhooks

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    """Send due webhook deliveries; with --once, drain what is due now and exit."""

    help = "Deliver queued webhook events (retries included)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="Attempt what is due now, then exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        while True:
            attempted, next_due = webhooks.deliver_due()
            connections.close_all()
            if options["once"]:
                self.stdout.write(f"attempted {attempted} deliveries")
                return
            if not attempted:
                time.sleep(webhooks.IDLE_WAIT_SECONDS if next_due is None else 0.5)
