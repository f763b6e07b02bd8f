"""The task worker: django-tasks-db's ``db_worker`` that first re-runs what its previous run left unfinished.

``manage.py runtasks --worker-id tasks-1`` (supervisord's task-worker, deploy/) runs webhook delivery rounds
and room mixes from the database's task table.  Give each worker of the pool its own stable id: on start, the
tasks this id was running when its process died go back to the queue (rooms.tasks.recover), and a webhook
round is queued so retries that were due while no worker ran go out.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from django.conf import settings
from django.db import connections
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from rooms import tasks, webhooks


class Command(DbWorkerCommand):
    """``db_worker`` on every queue of this project, with recovery and a stable default worker id."""

    help = "Run the background task worker (webhook deliveries, room mixes)."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.set_defaults(
            queue_name=",".join(tasks.QUEUES),
            interval=settings.TASK_WORKER_INTERVAL,
            reload=False,
            worker_id=f"{socket.gethostname()}-{os.getpid()}"[:64],
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tasks.recover(options["worker_id"])
        if options["queue_name"] == "*" or tasks.WEBHOOK_QUEUE in options["queue_name"].split(","):
            webhooks.wake()
        connections.close_all()
        super().handle(*args, **options)
