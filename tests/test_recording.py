"""Per-stream recording: real aiortc publishers through the WebSocket API, files read back with PyAV."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from conference.asgi import application
from rooms.models import Room
from rooms.recording_models import Recording
from tests.media_sources import CounterVideoTrack, ToneAudioTrack

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
WAIT = 15.0
RED, GREEN, BLUE = (220, 30, 30), (30, 200, 30), (30, 30, 220)


@pytest.fixture(autouse=True)
def recordings_dir(settings: Any, tmp_path: Path) -> Path:
    """Each test records into its own folder."""
    settings.RECORDINGS_DIR = tmp_path / "records"
    return settings.RECORDINGS_DIR


_open_clients: list[Client] = []


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Close every client a test opened, also when it fails (the publications and writers end with them)."""
    yield
    while _open_clients:
        client = _open_clients.pop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5)


class Client:
    """One participant: a WebSocket and its publishing peer connection."""

    def __init__(self, login: str) -> None:
        _open_clients.append(self)
        self.login = login
        self.closed = False
        self.ws = WebsocketCommunicator(application, "/ws/", headers=HEADERS)
        self.pc: RTCPeerConnection | None = None
        self.stream_id = ""
        self.publishing_at = 0.0
        self._rid = 0

    def rid(self) -> int:
        """A fresh request id."""
        self._rid += 1
        return self._rid

    async def until(self, predicate: Any, timeout: float = WAIT) -> dict[str, Any]:
        """The next event matching ``predicate`` (others are skipped)."""

        async def scan() -> dict[str, Any]:
            while True:
                event = await self.ws.receive_json_from(timeout)
                if predicate(event):
                    return event

        return await asyncio.wait_for(scan(), timeout)

    async def join(self, room: str, record: bool = False) -> None:
        """Connect, hello and join."""
        connected, _ = await self.ws.connect()
        assert connected
        await self.ws.send_json_to({"type": "hello", "version": 1, "username": self.login})
        assert (await self.until(lambda e: True))["type"] == "established"
        rid = self.rid()
        await self.ws.send_json_to({"type": "join", "room": room, "record": record, "rid": rid})
        assert (await self.until(lambda e: e.get("rid") == rid))["type"] == "state"

    async def publish(self, color: tuple[int, int, int], record: bool = True, frequency: float = 440.0) -> None:
        """Publish camera + microphone and wait for PUBLISHING."""
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(CounterVideoTrack(color))
        self.pc.addTrack(ToneAudioTrack(frequency))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        rid = self.rid()
        await self.ws.send_json_to(
            {"type": "publish", "kind": "camera", "sdp": self.pc.localDescription.sdp, "record": record, "rid": rid}
        )
        answer = await self.until(lambda e: e.get("rid") == rid)
        assert answer["type"] == "answer", answer
        self.stream_id = answer["stream"]["id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        status = await self.until(lambda e: e["type"] == "stream_status")
        assert status["status"] == "PUBLISHING", status
        self.publishing_at = time.time()

    async def leave(self) -> float:
        """Leave the room; the moment of leaving."""
        left_at = time.time()
        rid = self.rid()
        await self.ws.send_json_to({"type": "leave", "rid": rid})
        await self.until(lambda e: e.get("rid") == rid)
        await self.close()
        return left_at

    async def close(self) -> None:
        """Close the peer connection and the socket."""
        if self.closed:
            return
        self.closed = True
        if self.pc is not None:
            await self.pc.close()
        await self.ws.disconnect()


@database_sync_to_async
def _recordings(**filters: Any) -> list[Recording]:
    return list(Recording.objects.filter(**filters).select_related("room").order_by("start_offset", "pk"))


async def wait_recordings(count: int, timeout: float = 30.0, **filters: Any) -> list[Recording]:
    """``count`` recordings matching ``filters`` that are no longer recording."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await _recordings(**filters)
        if len(found) >= count and all(r.status != Recording.Status.RECORDING for r in found):
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"recordings not finished: {await _recordings(**filters)}")


def decode(path: Path) -> dict[str, Any]:
    """Decode a file: video frames (time, image), audio samples and their span."""
    frames: list[tuple[float, np.ndarray]] = []
    audio: list[np.ndarray] = []
    audio_times: list[float] = []
    with av.open(str(path)) as container:
        streams = [s for s in (container.streams.video[:1] + container.streams.audio[:1])]
        try:
            for frame in container.decode(*streams):
                if frame.time is None:
                    continue
                if isinstance(frame, av.VideoFrame):
                    frames.append((float(frame.time), frame.to_ndarray(format="rgb24")))
                else:
                    samples = frame.to_ndarray().astype(np.float32)
                    audio.append(samples.reshape(-1))
                    audio_times.append(float(frame.time) + frame.samples / frame.sample_rate)
        except av.error.InvalidDataError:
            pass  # a file cut by a crash may end mid-packet
    return {
        "frames": frames,
        "audio": np.concatenate(audio) if audio else np.zeros(0),
        "audio_span": (max(audio_times) if audio_times else 0.0),
        "video_span": (frames[-1][0] - frames[0][0] if frames else 0.0),
    }


def close_to(color: np.ndarray, expected: tuple[int, int, int], tolerance: int = 45) -> bool:
    """Colours equal within ``tolerance`` per channel (after lossy coding)."""
    return bool(np.all(np.abs(color.astype(int) - np.array(expected)) <= tolerance))


def body(image: np.ndarray) -> np.ndarray:
    """The mean colour of the lower middle of an image (below the counter bar, above the name label)."""
    height, width = image.shape[:2]
    return image[height // 3: height * 2 // 3, width // 4: width * 3 // 4].reshape(-1, 3).mean(axis=0)


async def test_two_recorded_streams_have_their_offsets_and_durations() -> None:
    """Two publishers, the second 2 s later, ~5 s each with record: two playable files with audio and video."""

    async def scenario() -> None:
        alice, bob = Client("alice"), Client("bob")
        await alice.join("rec-two")
        await bob.join("rec-two")
        await alice.publish(RED)
        await asyncio.sleep(2.0)
        await bob.publish(BLUE, frequency=660.0)
        await asyncio.sleep(max(0.0, alice.publishing_at + 5.0 - time.time()))
        alice_left = await alice.leave()
        await asyncio.sleep(max(0.0, bob.publishing_at + 5.0 - time.time()))
        bob_left = await bob.leave()

        recordings = await wait_recordings(2, kind=Recording.Kind.STREAM)
        by_login = {r.participant_login: r for r in recordings}
        room_start = by_login["alice"].room.created_at.timestamp()
        for login, client, left in (("alice", alice, alice_left), ("bob", bob, bob_left)):
            recording = by_login[login]
            assert recording.status == Recording.Status.DONE, recording.reason
            assert recording.video_codec == "vp8" and recording.audio_codec == "opus"
            assert recording.path is not None and recording.path.is_file()
            assert recording.file_name.endswith(".webm") and login not in recording.file_name
            assert recording.size == recording.path.stat().st_size
            expected = left - client.publishing_at
            assert abs(recording.duration - expected) <= 0.1 * expected, (login, recording.duration, expected)
            expected_offset = client.publishing_at - room_start
            assert abs(recording.start_offset - expected_offset) <= 0.1 * (left - room_start), login
            media = await asyncio.to_thread(decode, recording.path)
            assert media["frames"] and media["audio"].size, login
            assert abs(media["video_span"] - expected) <= 0.1 * expected, (login, media["video_span"])
            assert abs(media["audio_span"] - expected) <= 0.1 * expected, (login, media["audio_span"])
            color = RED if login == "alice" else BLUE
            assert close_to(body(media["frames"][0][1]), color), "the file starts with the publisher's picture"
        gap = by_login["bob"].start_offset - by_login["alice"].start_offset
        expected_gap = bob.publishing_at - alice.publishing_at
        assert abs(gap - expected_gap) <= 0.1 * expected_gap, (gap, expected_gap)

    await asyncio.wait_for(scenario(), 60)


async def test_killed_writer_leaves_a_playable_file() -> None:
    """Killing the writer process mid-stream: the recording fails with a reason, the file plays up to the cut."""
    from media_relay.worker import inprocess_worker

    async def scenario() -> None:
        alice = Client("alice")
        await alice.join("rec-crash")
        await alice.publish(GREEN)
        await asyncio.sleep(3.0)
        worker = inprocess_worker()
        assert worker is not None
        sink = worker.publications[alice.stream_id].ingests["video"].sinks[0]
        pid = sink.writer.pid  # type: ignore[attr-defined]
        assert pid
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        [recording] = await wait_recordings(1, kind=Recording.Kind.STREAM)
        assert recording.status == Recording.Status.FAILED
        assert "exited unexpectedly" in recording.reason
        await alice.leave()
        media = await asyncio.to_thread(decode, recording.path)
        assert len(media["frames"]) > 15 and media["audio"].size
        assert close_to(body(media["frames"][-1][1]), GREEN)
        # Clusters close every second: at most about a second is lost.
        assert media["video_span"] >= (killed_at - alice.publishing_at) - 2.0, media["video_span"]

    await asyncio.wait_for(scenario(), 40)


@database_sync_to_async
def _room(name: str) -> Room:
    return Room.objects.get(name=name)


async def test_recorded_room_is_mixed_into_one_grid(task_worker: object) -> None:
    """A recorded room with three publishers: the task worker mixes one file, the media's duration, three tiles,
    audible."""

    async def scenario() -> None:
        clients = [Client("alice"), Client("bob"), Client("carol")]
        await clients[0].join("rec-mix", record=True)
        for client in clients[1:]:
            await client.join("rec-mix")
        for client, color, frequency in zip(clients, (RED, GREEN, BLUE), (440.0, 550.0, 660.0), strict=True):
            await client.publish(color, record=False, frequency=frequency)  # the room records them all
            await asyncio.sleep(0.5)
        await asyncio.sleep(3.5)
        for client in clients:
            await client.leave()
        room = await _room("rec-mix")
        assert room.finalized_at is not None and room.record
        [mixed] = await wait_recordings(1, timeout=60, kind=Recording.Kind.MIXED, room=room)
        assert mixed.status == Recording.Status.DONE, mixed.reason
        assert mixed.progress == 100.0
        streams = await _recordings(kind=Recording.Kind.STREAM, room=room)
        assert len(streams) == 3 and all(s.file_exists for s in streams), "per-stream files are kept"
        # The mix spans the media: from the first stream's start to the last one's end (idle room time cut).
        first_start = min(s.start_offset for s in streams)
        media_duration = max(s.start_offset + (s.duration or 0.0) for s in streams) - first_start
        assert abs(mixed.duration - media_duration) <= 0.1 * media_duration, (mixed.duration, media_duration)

        media = await asyncio.to_thread(decode, mixed.path)
        width, height = 320, 240
        last_start = max(s.start_offset for s in streams) - first_start
        checked = 0
        for moment in (last_start + 0.8, (last_start + media_duration) / 2, media_duration - 1.2):
            time_, image = min(media["frames"], key=lambda f: abs(f[0] - moment))
            assert image.shape[1] == 2 * width and image.shape[0] == 2 * height
            for slot, color in enumerate((RED, GREEN, BLUE)):
                x, y = (slot % 2) * width, (slot // 2) * height
                tile = image[y:y + height, x:x + width]
                assert close_to(body(tile), color), (time_, slot, body(tile))
            assert body(image[height:, width:]).max() < 40, "the fourth cell stays black"
            checked += 1
        assert checked == 3
        # Before the last publisher started, its tile is black.
        early = [f for f in media["frames"] if f[0] < streams[-1].start_offset - first_start - 0.3]
        if early:
            assert body(early[-1][1][height:, :width]).max() < 40
        rms = float(np.sqrt(np.mean((media["audio"] / (1 if media["audio"].dtype.kind == "f" else 32768)) ** 2)))
        assert rms > 0.02, rms

    await asyncio.wait_for(scenario(), 90)
