"""``manage.py cleanup``: finished background-task rows past TASK_RETENTION_DAYS are deleted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from rooms.webhooks import deliver_webhooks

pytestmark = pytest.mark.django_db


def test_old_finished_task_rows_are_deleted_and_waiting_ones_stay(settings: Any) -> None:
    """A successful and a failed row finished 8 days ago go with TASK_RETENTION_DAYS=7; one finished today and
    one still queued stay."""
    settings.TASK_RETENTION_DAYS = 7
    ids = [deliver_webhooks.enqueue().id for _ in range(4)]
    old_ok, old_failed, recent, waiting = ids
    long_ago = timezone.now() - timedelta(days=8)
    DBTaskResult.objects.filter(pk=old_ok).update(status=TaskResultStatus.SUCCESSFUL, finished_at=long_ago)
    DBTaskResult.objects.filter(pk=old_failed).update(status=TaskResultStatus.FAILED, finished_at=long_ago)
    DBTaskResult.objects.filter(pk=recent).update(status=TaskResultStatus.SUCCESSFUL, finished_at=timezone.now())
    call_command("cleanup")
    assert {str(pk) for pk in DBTaskResult.objects.values_list("pk", flat=True)} == {str(recent), str(waiting)}
