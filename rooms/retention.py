"""Retention of room data: each step deletes one kind of expired rows (run by ``manage.py cleanup``).

A step takes no arguments, reads its own setting (0 = keep forever) and returns
how many rows it deleted.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from rooms.models import Message, RevokedToken, WebhookDelivery

logger = logging.getLogger(__name__)


def delete_expired_messages() -> int:
    """Chat messages older than MESSAGE_RETENTION_DAYS."""
    days = settings.MESSAGE_RETENTION_DAYS
    if days <= 0:
        return 0
    deleted, _ = Message.objects.filter(sent_at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted


def delete_old_webhook_deliveries() -> int:
    """Finished (succeeded or failed) webhook deliveries older than WEBHOOK_RETENTION_DAYS; pending ones stay."""
    days = settings.WEBHOOK_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    finished = (WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED)
    old = WebhookDelivery.objects.filter(status__in=finished, created_at__lt=cutoff)
    deleted, _ = old.exclude(delivered_at__gte=cutoff).delete()
    return deleted


def delete_expired_revocations() -> int:
    """Revoked-token rows whose token has expired anyway (JOIN_TOKEN_MAX_TTL after the revocation)."""
    deleted, _ = RevokedToken.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted


def delete_finished_task_results() -> int:
    """Finished (successful or failed) background-task rows older than TASK_RETENTION_DAYS; queued and running
    ones stay."""
    days = settings.TASK_RETENTION_DAYS
    if days <= 0:
        return 0
    deleted, _ = DBTaskResult.objects.filter(finished_at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted
