"""Finding 6 of issue 11: recording without the grant, without limits, and a mix that names can break.

Design under test: ``can_record`` required for ``join {record: true}``;
RECORDING_MAX_SECONDS (a stream stops recording with a clear reason, the call
goes on); RECORDING_RETENTION_DAYS and ``manage.py cleanup`` deleting expired
files and rows; drawtext with ``expansion=none``; a font setting
(RECORDING_MIX_FONT) whose default covers CJK.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone

import roomapi
from media_relay.recording.mixer import MixInput, build_command
from media_relay.recording.probe import probe
from roomapi import STREAM_STATUS
from rooms.models import Recording, Room
from rooms.tokens import mint_token
from tests.media_sources import CounterVideoTrack, ToneAudioTrack
from tests.roomclient import RoomClient
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0


async def test_join_with_record_needs_the_grant() -> None:
    """Finding 6: a viewer (no can_record) creating a room with `join {record: true}` is refused with forbidden;
    the room is not created recording."""
    viewer = await RoomClient.open(token=mint_token("secretly", "eve", role="viewer"))
    refused = await viewer.join("secretly", record=True)
    assert refused["type"] == "error" and refused["code"] == "forbidden", refused
    assert not await database_sync_to_async(Room.objects.filter(name="secretly", record=True).exists)()
    await viewer.close()


async def test_a_recording_stops_at_its_maximum_duration(transactional_db: Any, tmp_path: Path) -> None:
    """Finding 6: with RECORDING_MAX_SECONDS=2 a recorded stream's file is closed with a reason naming the limit,
    while the stream itself goes on PUBLISHING."""
    env = {"RECORDING_MAX_SECONDS": "2", "RECORDINGS_DIR": str(tmp_path), "MEDIA_CONNECT_TIMEOUT": "5"}
    with DaphneServer(env) as server:
        ann = await roomapi.connect(server.ws_url, "ann")
        room = await ann.join("capped")
        stream = await room.publish(video=CounterVideoTrack((30, 200, 30)), audio=ToneAudioTrack(), record=True)
        await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
        deadline = time.monotonic() + WAIT
        status, reason = "", ""
        while time.monotonic() < deadline:  # bounded wait for the writer to stop by itself
            query = Recording.objects.filter(kind="stream").values("status", "reason")
            rows = await database_sync_to_async(list)(query)
            if rows and rows[0]["status"] != Recording.Status.RECORDING:
                status, reason = rows[0]["status"], rows[0]["reason"]
                break
            await ann.ping()
            await asyncio.sleep(0.2)
        assert status and status != Recording.Status.RECORDING, "the recording never stopped by itself"
        assert "RECORDING_MAX_SECONDS" in reason or "maximum" in reason, reason
        assert stream.status() == STREAM_STATUS.PUBLISHING, stream.status()
        await ann.disconnect()


def test_expired_recordings_are_deleted(settings: Any, tmp_path: Path) -> None:
    """Finding 6: `manage.py cleanup` deletes recordings (file and row) older than RECORDING_RETENTION_DAYS and
    keeps younger ones."""
    settings.RECORDINGS_DIR = tmp_path
    settings.RECORDING_RETENTION_DAYS = 7
    room = Room.objects.create(name="old", max_participants=10)
    kept, expired = (Recording.objects.create(room=room, file_name=f"{name}.webm") for name in ("kept", "expired"))
    for recording in (kept, expired):
        assert recording.path is not None
        recording.path.write_bytes(b"media")
    Recording.objects.filter(pk=expired.pk).update(created_at=timezone.now() - timedelta(days=8))
    call_command("cleanup")
    assert list(Recording.objects.values_list("pk", flat=True)) == [kept.pk]
    assert (tmp_path / "kept.webm").exists() and not (tmp_path / "expired.webm").exists()


def tiny_video(path: Path) -> Path:
    """A one-second VP8 WebM made by ffmpeg."""
    subprocess.run(
        [django_settings.RECORDING_FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc=s=160x120:r=10:d=1", "-c:v", "libvpx", "-y", str(path)],
        check=True, timeout=60,
    )
    return path


def test_a_login_with_a_text_expansion_does_not_break_the_mix(settings: Any, tmp_path: Path) -> None:
    """Finding 6: participants named `%{foo}` and `%{eif:1/0:d}` are drawn literally: the real ffmpeg mix runs
    without a drawtext complaint (with expansion on it fails to expand them on every frame)."""
    settings.RECORDINGS_DIR = tmp_path
    settings.RECORDING_MIX_HAS_AUDIO = False
    room = Room.objects.create(name="names", max_participants=10)
    inputs = []
    for n, login in enumerate(("%{foo}", "%{eif:1/0:d}")):
        recording = Recording(room=room, file_name=f"in{n}.webm", participant_login=login)
        tiny_video(tmp_path / recording.file_name)
        assert recording.path is not None
        inputs.append(MixInput(recording.path, probe(recording.path), 0.0, login))
    work = tmp_path / "work"
    work.mkdir()
    command = build_command(inputs, 1.0, tmp_path / "mix.mp4", work)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "drawtext" not in result.stderr, result.stderr[-2000:]  # expanded: "%{foo} is not known" each frame
    assert "expansion=none" in " ".join(command)


def test_the_default_mix_font_covers_cjk() -> None:
    """Finding 6: RECORDING_MIX_FONT's default is a font with Chinese and Japanese glyphs (names are not boxes)."""
    fc_query = shutil.which("fc-query")
    assert fc_query is not None, "fontconfig's fc-query is needed"
    font = django_settings.RECORDING_MIX_FONT
    languages = subprocess.run([fc_query, "--format=%{lang}\n", font], capture_output=True, text=True, timeout=30)
    covered = set(languages.stdout.replace("\n", "|").split("|"))
    assert {"zh-cn", "ja"} <= covered, (font, languages.stdout[:300])
