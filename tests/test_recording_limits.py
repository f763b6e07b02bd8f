"""The caps on recording (issue 11, finding 6): free-disk floor, file size, the mix on the media's timeline and its
watchdog, and the grant needed to create a recorded room."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.utils import timezone

import roomapi
from media_relay.recording.limits import RecordingLimits, disk_refusal, free_bytes, limit_reached
from media_relay.recording.mixer import MixError, MixInput, run_mix, watchdog_seconds
from media_relay.recording.probe import probe
from roomapi import STREAM_STATUS
from rooms.models import Participant, Recording, Room
from rooms.recordings.mixing import mix_room
from rooms.tokens import mint_token
from tests.media_sources import CounterVideoTrack, ToneAudioTrack
from tests.roomclient import RoomClient
from tests.servers import DaphneServer

WAIT = 30.0


def tiny_video(path: Path, seconds: float = 1.0) -> Path:
    """A short VP8 WebM made by ffmpeg."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [django_settings.RECORDING_FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         f"testsrc=s=160x120:r=10:d={seconds}", "-c:v", "libvpx", "-y", str(path)],
        check=True, timeout=60,
    )
    return path


def test_size_and_disk_caps_name_their_setting(tmp_path: Path) -> None:
    """A file at RECORDING_MAX_BYTES, or a disk under RECORDING_MIN_FREE_BYTES, stops a recording with that name;
    under the caps it goes on, and 0 means no cap."""
    path = tmp_path / "stream.webm"
    path.write_bytes(b"x" * 5000)
    free = free_bytes(tmp_path)
    assert limit_reached(RecordingLimits(0, 0, 0), path, 10**6) == ""
    assert limit_reached(RecordingLimits(60, 10_000, 1), path, 1.0) == ""
    assert "RECORDING_MAX_BYTES" in limit_reached(RecordingLimits(60, 4096, 0), path, 1.0)
    assert "RECORDING_MAX_SECONDS" in limit_reached(RecordingLimits(60, 0, 0), path, 60.0)
    above_the_disk = free + 2**40
    assert "RECORDING_MIN_FREE_BYTES" in limit_reached(RecordingLimits(0, 0, above_the_disk), path, 1.0)
    assert "RECORDING_MIN_FREE_BYTES" in disk_refusal(RecordingLimits(0, 0, above_the_disk), tmp_path / "room-1")
    assert disk_refusal(RecordingLimits(0, 0, 1), tmp_path / "room-1") == ""


@pytest.mark.django_db(transaction=True)
async def test_a_full_disk_refuses_the_recording_and_the_call_goes_on(tmp_path: Path) -> None:
    """Below RECORDING_MIN_FREE_BYTES a recorded stream is not recorded: its row fails naming the setting, while
    the stream goes on PUBLISHING."""
    env = {"RECORDING_MIN_FREE_BYTES": str(2**62), "RECORDINGS_DIR": str(tmp_path), "MEDIA_CONNECT_TIMEOUT": "5"}
    with DaphneServer(env) as server:
        ann = await roomapi.connect(server.ws_url, "ann")
        room = await ann.join("full-disk")
        stream = await room.publish(video=CounterVideoTrack((30, 200, 30)), audio=ToneAudioTrack(), record=True)
        await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
        deadline = time.monotonic() + WAIT
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:  # bounded wait for the row to be finished
            query = Recording.objects.filter(kind="stream").values("status", "reason")
            rows = await database_sync_to_async(list)(query)
            if rows and rows[0]["status"] != Recording.Status.RECORDING:
                break
            await asyncio.sleep(0.2)
        assert rows and rows[0]["status"] == Recording.Status.FAILED, rows
        assert "RECORDING_MIN_FREE_BYTES" in rows[0]["reason"], rows
        await ann.ping()
        assert stream.status() == STREAM_STATUS.PUBLISHING, stream.status()
        assert not list(tmp_path.rglob("*.webm")), "nothing was written"
        await ann.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_publisher_token_without_can_record_cannot_create_a_recorded_room() -> None:
    """Explicit token grants without can_record: `join {record: true}` creating the room is forbidden; the same
    token joins the room without recording."""
    grants = ["can_publish", "can_play", "can_chat"]
    client = await RoomClient.open(token=mint_token("quiet", "pat", grants=grants))
    refused = await client.join("quiet", record=True)
    assert refused["type"] == "error" and refused["code"] == "forbidden", refused
    joined = await client.join("quiet")
    assert joined["type"] == "state" and joined["room"]["record"] is False, joined
    await client.close()


@pytest.mark.django_db
def test_an_idle_room_is_mixed_on_the_media_timeline(settings: Any, tmp_path: Path) -> None:
    """A room open an hour before its one-second stream started: the mix lasts the media (not the hour), so its
    watchdog is proportional to the media."""
    settings.RECORDINGS_DIR = tmp_path
    settings.RECORDING_MIX_WAIT_SECONDS = 0.5
    settings.RECORDING_MIX_HAS_AUDIO = False
    room = Room.objects.create(name="idle", record=True, max_participants=10)
    Room.objects.filter(pk=room.pk).update(created_at=timezone.now() - timedelta(hours=2), finalized_at=timezone.now())
    participant = Participant.objects.create(room=room, login="late", state=Participant.State.LEFT)
    recording = Recording.objects.create(
        room=room, participant=participant, participant_login="late", start_offset=3600.0,
        status=Recording.Status.DONE, file_name=f"room-{room.pk}/stream-late.webm",
    )
    assert recording.path is not None
    tiny_video(recording.path)
    mixed = mix_room(room.pk)
    assert mixed.status == Recording.Status.DONE, mixed.reason
    assert mixed.duration is not None and mixed.duration < 3.0, mixed.duration
    assert watchdog_seconds(mixed.duration) < watchdog_seconds(3600.0)


def test_a_mix_past_its_watchdog_is_stopped_with_a_reason(settings: Any, tmp_path: Path) -> None:
    """A mix running longer than RECORDING_MIX_TIMEOUT_BASE + FACTOR x media seconds is killed and fails saying so."""
    settings.RECORDINGS_DIR = tmp_path
    settings.RECORDING_MIX_HAS_AUDIO = False
    settings.RECORDING_MIX_TIMEOUT_BASE = 0.0
    settings.RECORDING_MIX_TIMEOUT_FACTOR = 0.001
    source = tiny_video(tmp_path / "in.webm", seconds=3.0)
    with pytest.raises(MixError, match="took longer than"):
        run_mix([MixInput(source, probe(source), 0.0, "name")], 3.0, tmp_path / "mix.mp4", lambda percent: None)
