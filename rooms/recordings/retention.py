"""Recording retention: rows and files older than RECORDING_RETENTION_DAYS are deleted (``manage.py cleanup``)."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from rooms.recording_models import Recording

logger = logging.getLogger(__name__)

BATCH = 500


def delete_expired_recordings(now: datetime | None = None) -> int:
    """Delete finished recordings created more than RECORDING_RETENTION_DAYS ago, file and row; how many.

    0 days keeps everything.  A row still marked recording that old is stale (RECORDING_MAX_SECONDS
    stops every writer long before), so it goes too.
    """
    days = settings.RECORDING_RETENTION_DAYS
    if not days:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    expired = Recording.objects.filter(created_at__lt=cutoff)
    deleted = 0
    while batch := list(expired.order_by("pk").values_list("pk", "file_name")[:BATCH]):
        for _, file_name in batch:
            _delete_file(file_name)
        Recording.objects.filter(pk__in=[pk for pk, _ in batch]).delete()
        deleted += len(batch)
    if deleted:
        logger.info("deleted %d recordings older than %d days", deleted, days)
    return deleted


def _delete_file(file_name: str) -> None:
    """Remove a recording's file (and its folder once empty), never anything outside RECORDINGS_DIR."""
    if not file_name:
        return
    root = Path(settings.RECORDINGS_DIR).resolve()
    path = (root / file_name).resolve()
    if not path.is_relative_to(root) or path == root:
        logger.warning("not deleting %s: outside RECORDINGS_DIR", file_name)
        return
    path.unlink(missing_ok=True)
    if path.parent != root:
        with contextlib.suppress(OSError):  # not empty: other recordings of the room are kept
            path.parent.rmdir()
