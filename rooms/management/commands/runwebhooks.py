"""Deliver queued webhooks in the foreground, without the task worker (a manual tool; runtasks does this)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connections

from rooms import webhooks


class Command(BaseCommand):
    """Send due webhook deliveries; with --once, drain what is due now and exit."""

    help = "Deliver queued webhook events (retries included) in this process; `runtasks` is the usual way."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="Attempt what is due now, then exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            attempted, _ = webhooks.deliver_due()
            connections.close_all()
            self.stdout.write(f"attempted {attempted} deliveries")
            return
        while True:
            webhooks.run_round()
            time.sleep(1.0)
