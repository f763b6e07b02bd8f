"""Durable background tasks: Django's task framework (the django-tasks backport) stored by django-tasks-db.

Webhook delivery rounds (rooms.webhooks.deliver_webhooks) and room mixes
(rooms.recordings.mixing.mix_task) are enqueued as rows of the database's task
table in the transaction of the event that causes them, and run by the task
worker, ``manage.py runtasks`` (django-tasks-db's ``db_worker`` plus recovery,
below): never on a thread of daphne or of a media worker.

Durability: a task row outlives every process.  A worker killed while running a
task leaves that row RUNNING with its worker id; a worker id is unique in the
pool (supervisord gives ``tasks-N``), so when ``runtasks --worker-id X`` starts
again it puts the rows X left RUNNING back to READY (:func:`recover`) and they
run again.  Webhook deliveries are safe to re-run: a round only sends
deliveries it claims in the WebhookDelivery table; room mixes start over.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.utils import timezone

logger = logging.getLogger(__name__)

WEBHOOK_QUEUE = "webhooks"
MIX_QUEUE = "mixes"
QUEUES = (WEBHOOK_QUEUE, MIX_QUEUE)


def _model() -> Any:
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult


def _status() -> Any:
    from django_tasks import TaskResultStatus

    return TaskResultStatus


def enqueue_once(task: Any, run_after: datetime | None = None) -> bool:
    """Enqueue ``task`` (no arguments) unless a READY row of it will already start by ``run_after`` (now when
    None); True when a row was added.  A READY row not yet started sees every change committed before it runs, so
    one is enough."""
    from django_tasks_db.models import get_date_max

    model, status = _model(), _status()
    waiting = model.objects.filter(task_path=task.module_path, status=status.READY)
    when = run_after or timezone.now()
    if waiting.filter(run_after=get_date_max()).exists() or waiting.filter(run_after__lte=when).exists():
        return False
    (task if run_after is None else task.using(run_after=run_after)).enqueue()
    return True


def recover(worker_id: str) -> int:
    """Put back to READY the tasks a previous run of ``worker_id`` left RUNNING (it was killed); their count."""
    model, status = _model(), _status()
    stranded = [
        row.pk
        for row in model.objects.filter(status=status.RUNNING).only("pk", "worker_ids")
        if row.worker_ids and row.worker_ids[-1] == worker_id
    ]
    if stranded:
        model.objects.filter(pk__in=stranded, status=status.RUNNING).update(status=status.READY, started_at=None)
        logger.warning("task worker %s: %d task(s) it was running when it stopped run again", worker_id,
                       len(stranded))
    return len(stranded)


def queue_depths() -> dict[tuple[str, str], int]:
    """Task rows waiting or running, by (queue, status) (for /metrics)."""
    from django.db.models import Count

    model, status = _model(), _status()
    depths = {(queue, str(s).lower()): 0 for queue in QUEUES for s in (status.READY, status.RUNNING)}
    rows = (
        model.objects.filter(status__in=[status.READY, status.RUNNING])
        .values("queue_name", "status")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        depths[(row["queue_name"], str(row["status"]).lower())] = int(row["n"])
    return depths
