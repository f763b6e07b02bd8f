"""Recording rows: created when a recorded stream starts flowing, finished from what its file holds."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from django.utils import timezone

from media_relay.contract import RecordingFormat
from media_relay.recording.probe import probe
from rooms import signals
from rooms.models import Stream
from rooms.recording_models import Recording

logger = logging.getLogger(__name__)


def stream_file_name(room_pk: int, public_id: str, extension: str) -> str:
    """A per-stream file name: ids only, never user text."""
    return f"room-{int(room_pk)}/stream-{public_id}.{extension}"


def mixed_file_name(room_pk: int, public_id: str) -> str:
    """A room mix file name: ids only."""
    return f"room-{int(room_pk)}/mixed-{public_id}.mp4"


def create_stream_recording(stream_id: str, recording_format: RecordingFormat) -> tuple[str, Path] | None:
    """A RECORDING row for a recorded stream whose media flows: its public id and file path.

    None when the stream is unknown or not recorded.
    """
    stream = Stream.objects.select_related("participant", "participant__room").filter(public_id=stream_id).first()
    if stream is None or not stream.record:
        return None
    participant = stream.participant
    recording = Recording(
        kind=Recording.Kind.STREAM,
        room=participant.room,
        participant=participant,
        stream=stream,
        participant_login=participant.login,
        audio_codec=recording_format.audio_codec,
        video_codec=recording_format.video_codec,
        started_at=timezone.now(),
        start_offset=max(0.0, (timezone.now() - participant.room.created_at).total_seconds()),
    )
    recording.file_name = stream_file_name(participant.room_id, recording.public_id, recording_format.extension)
    recording.save()
    assert recording.path is not None
    return recording.public_id, recording.path


def finish_stream_recording(
    public_id: str, *, failure: str = "", first_packet_at: float | None = None, detail: str = "", stopped: str = ""
) -> Recording:
    """Read the file back and mark the recording done (or failed with a reason).

    ``stopped``: why the relay ended a good recording early (a cap); kept as the reason of a DONE row.
    """
    recording = Recording.objects.select_related("room").get(public_id=public_id)
    if first_packet_at is not None:
        started = datetime.fromtimestamp(first_packet_at, tz=UTC)
        recording.started_at = started
        recording.start_offset = max(0.0, (started - recording.room.created_at).total_seconds())
    info = None
    path = recording.path
    if path is not None and path.is_file():
        try:
            info = probe(path)
        except Exception as exc:  # an empty or headerless file
            logger.info("recording %s unreadable: %s", recording.public_id, exc)
    if failure:
        recording.status, recording.reason = Recording.Status.FAILED, failure
    elif info is None or info.duration <= 0:
        recording.status = Recording.Status.FAILED
        recording.reason = "no media was recorded" + (f" ({detail})" if detail else "")
    else:
        recording.status, recording.reason = Recording.Status.DONE, stopped
    if info is not None:
        recording.duration, recording.size = info.duration, info.size
    recording.progress = 100.0
    recording.finished_at = timezone.now()
    recording.save()
    logger.info("recording %s %s (%.1f s)", recording.public_id, recording.status, recording.duration or 0)
    if recording.status == Recording.Status.DONE:
        send_finished(recording)
    return recording


def send_finished(recording: Recording) -> None:
    """Tell listeners (webhooks) that a recording's file is ready."""
    try:
        signals.recording_finished.send(sender=Recording, recording=recording)
    except Exception:
        logger.exception("a recording_finished receiver failed")
