"""The room mix job: after a recorded room ends, its per-stream recordings become one mixed recording.

The job is a durable task (:func:`mix_task`, queue "mixes", rooms.tasks) run by
the task worker (``manage.py runtasks``), off daphne and the media workers: a
mix queued or running when a process stops runs (again) once a worker is up.
It picks the room's per-stream rows, places
each file at its offset on the room's timeline, runs the relay's mix graph
(media_relay.recording.mixer) and keeps the progress, the result or the
failure's reason on the mixed Recording; a failed mix can be re-run.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_tasks import task

from media_relay.recording.mixer import MixError, MixInput, run_mix
from media_relay.recording.probe import probe
from rooms.models import Room
from rooms.recording_models import Recording
from rooms.recordings.store import mixed_file_name, send_finished
from rooms.tasks import MIX_QUEUE

logger = logging.getLogger(__name__)

_lock = threading.Lock()


def on_room_finished(sender: Any, room: Room, **kwargs: Any) -> None:
    """room_finished receiver: queue the mix of a recorded room (only enqueues)."""
    if room.record:
        enqueue_mix(room.pk)


def enqueue_mix(room_id: int, recording_id: int | None = None) -> Any:
    """Queue the (re-)mix of a room for the task worker; the task result's id names the row in the task table."""
    return mix_task.enqueue(room_id, recording_id)


@task(queue_name=MIX_QUEUE)
def mix_task(room_id: int, recording_id: int | None = None) -> int | None:
    """The mix task (one at a time per worker: a mix is CPU-bound and its watchdog bounds it); the mixed
    Recording's pk, None when the room is gone or the job broke (the Recording then says why)."""
    try:
        return mix_room(room_id, recording_id).pk
    except Room.DoesNotExist:
        logger.warning("mix of room %s skipped: the room no longer exists", room_id)
        return None
    except Exception:
        logger.exception("mixing room %s failed", room_id)
        return None


def mix_room(room_id: int, recording_id: int | None = None) -> Recording:
    """Mix a finished room's per-stream recordings into one file (blocking; the task worker calls it)."""
    room = Room.objects.get(pk=room_id)
    with _lock:
        if recording_id is not None:
            mixed = Recording.objects.get(pk=recording_id, kind=Recording.Kind.MIXED)
        else:
            mixed = Recording.objects.filter(room=room, kind=Recording.Kind.MIXED).first() or Recording(
                kind=Recording.Kind.MIXED, room=room
            )
        mixed.status, mixed.reason, mixed.progress = Recording.Status.RECORDING, "", 0.0
        mixed.started_at, mixed.finished_at = timezone.now(), None
        if not mixed.file_name:
            mixed.file_name = mixed_file_name(room.pk, mixed.public_id)
        mixed.save()
    try:
        inputs = _gather_inputs(room)
        duration = media_timeline(inputs)
        output = mixed.path
        assert output is not None
        logger.info("mixing room %s: %d inputs, %.1f s", room.pk, len(inputs), duration)
        run_mix(inputs, duration, output, lambda percent: _progress(mixed.pk, percent))
        info = probe(output)
    except MixError as exc:
        return _fail(mixed, str(exc))
    except Exception as exc:
        logger.exception("mix of room %s failed", room.pk)
        return _fail(mixed, f"unexpected error: {exc}")
    mixed.status, mixed.reason, mixed.progress = Recording.Status.DONE, "", 100.0
    mixed.duration, mixed.size = info.duration, info.size
    mixed.audio_codec, mixed.video_codec = info.audio_codec, info.video_codec
    mixed.finished_at = timezone.now()
    mixed.save()
    logger.info("room %s mixed into %s (%.1f s)", room.pk, mixed.file_name, info.duration)
    send_finished(mixed)
    return mixed


def _progress(recording_pk: int, percent: float) -> None:
    Recording.objects.filter(pk=recording_pk).update(progress=percent)


def _fail(mixed: Recording, reason: str) -> Recording:
    logger.warning("mix %s failed: %s", mixed.public_id, reason)
    mixed.status, mixed.reason, mixed.finished_at = Recording.Status.FAILED, reason[:2000], timezone.now()
    mixed.save(update_fields=["status", "reason", "finished_at"])
    return mixed


def _gather_inputs(room: Room) -> list[MixInput]:
    streams = Recording.objects.filter(room=room, kind=Recording.Kind.STREAM)
    deadline = time.monotonic() + settings.RECORDING_MIX_WAIT_SECONDS
    while streams.filter(status=Recording.Status.RECORDING).exists() and time.monotonic() < deadline:
        time.sleep(0.25)
    recordings = list(streams.order_by("start_offset", "pk"))
    if not recordings:
        raise MixError("the room has no per-stream recordings to mix")
    missing = [r for r in recordings if not r.file_exists]
    if missing:
        names = ", ".join(f"{r.public_id} ({r.file_name or 'no file'})" for r in missing)
        raise MixError(f"input files missing: {len(missing)} of {len(recordings)} per-stream recordings: {names}")
    inputs = []
    for recording in recordings:
        path = recording.path
        assert path is not None
        try:
            info = probe(path)
        except Exception as exc:
            raise MixError(f"input file unreadable: {recording.public_id} ({recording.file_name}): {exc}") from None
        if info.duration > 0:
            inputs.append(MixInput(path, info, recording.start_offset, recording.participant_login))
    if not inputs:
        raise MixError("every per-stream recording is empty")
    return inputs


def media_timeline(inputs: list[MixInput]) -> float:
    """Shift the inputs so the mix starts at the first media; its duration ends with the last media.

    The room's idle time before the first stream and after the last one is not mixed, so the
    mix's work (and its watchdog) is proportional to the media, not to how long the room stayed open.
    """
    start = min(i.offset for i in inputs)
    for item in inputs:
        item.offset -= start
    return max(0.5, max(i.offset + i.info.duration for i in inputs))
