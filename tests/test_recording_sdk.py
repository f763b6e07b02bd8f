"""Recording flags through the Python SDK against a real daphne: H.264 remuxed, a recorded room."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from channels.db import database_sync_to_async

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from rooms.models import Room, Stream
from rooms.recording_models import Recording
from tests.media_sources import CounterVideoTrack, ToneAudioTrack, read_counter
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0


@pytest.fixture
def server(transactional_db: Any, tmp_path: Path) -> Iterator[DaphneServer]:
    """A daphne process recording into a folder of this test."""
    with DaphneServer({"RECORDINGS_DIR": str(tmp_path)}) as srv:
        srv.recordings = tmp_path  # type: ignore[attr-defined]
        yield srv


async def finished_recording(stream_id: str, timeout: float = 30.0) -> Recording:
    """The per-stream recording of a stream once it is done or failed (bounded)."""
    deadline = time.monotonic() + timeout
    query = Recording.objects.filter(stream__public_id=stream_id, kind=Recording.Kind.STREAM)
    while True:
        recording = await database_sync_to_async(query.first)()
        if recording is not None and recording.status != Recording.Status.RECORDING:
            return recording
        assert time.monotonic() < deadline, f"recording of {stream_id} never finished: {recording}"
        await asyncio.sleep(0.3)


async def test_sdk_record_flag_remuxes_h264_without_transcoding(server: DaphneServer) -> None:
    """publish(record=True) with H.264 gives a Matroska file of the publisher's own H.264 and audio."""
    ann = await roomapi.connect(server.ws_url, "ann")
    room = await ann.join("rec-h264")
    stream = await room.publish(video=CounterVideoTrack(), audio=ToneAudioTrack(), record=True, video_codec="H264")
    await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    await asyncio.sleep(3)
    await stream.stop()
    recording = await finished_recording(stream.id)
    assert recording.status == Recording.Status.DONE, recording.reason
    assert recording.video_codec.upper() == "H264"
    path = server.recordings / recording.file_name  # type: ignore[attr-defined]
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert container.streams.audio
        frames = [frame for _, frame in zip(range(20), container.decode(video), strict=False)]
    numbers = [read_counter(frame) for frame in frames]
    assert len(numbers) == 20 and numbers == sorted(numbers)
    assert recording.duration is not None and 2.0 < recording.duration < 5.0
    await ann.disconnect()


async def test_sdk_join_record_makes_every_stream_of_the_room_recorded(server: DaphneServer) -> None:
    """join(record=True) by the creator records streams published without the flag."""
    ann = await roomapi.connect(server.ws_url, "ann")
    bob = await roomapi.connect(server.ws_url, "bob")
    room_a = await ann.join("rec-room", record=True)
    room_b = await bob.join("rec-room")
    assert room_b.info["record"] is True
    stream = await room_b.publish(video=CounterVideoTrack())
    await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    await room_a.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    assert await database_sync_to_async(Room.objects.filter(name="rec-room", record=True).exists)()
    assert await database_sync_to_async(Stream.objects.get)(public_id=stream.id, record=True)
    await asyncio.sleep(2)
    await room_b.leave()
    recording = await finished_recording(stream.id)
    assert recording.status == Recording.Status.DONE, recording.reason
    await room_a.leave()
    await ann.disconnect()
    await bob.disconnect()
