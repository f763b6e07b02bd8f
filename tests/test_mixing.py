"""The room mix job on files made by ffmpeg: timeline placement, failures with reasons, re-runs."""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from django.utils import timezone

from rooms.models import Participant, Room
from rooms.recording_models import Recording
from rooms.recordings.mixing import enqueue_mix, mix_room
from tests.task_worker import running_worker, wait_task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def recordings_dir(settings: Any, tmp_path: Path) -> Path:
    """Each test mixes in its own folder and does not wait for streams still recording."""
    settings.RECORDINGS_DIR = tmp_path / "records"
    settings.RECORDING_MIX_WAIT_SECONDS = 0.5
    return settings.RECORDINGS_DIR


def wait_for_status(recording: Recording, status: str, timeout: float = 60.0) -> None:
    """Poll the recording's row until it has ``status`` (bounded)."""
    deadline = time.monotonic() + timeout
    while Recording.objects.get(pk=recording.pk).status != status:
        assert time.monotonic() < deadline, f"{recording.public_id} never became {status}"
        time.sleep(0.1)


def make_room(name: str, duration: float) -> Room:
    """A finished recorded room that lasted ``duration`` seconds."""
    room = Room.objects.create(name=name, record=True, max_participants=10)
    room.created_at = timezone.now() - timedelta(seconds=duration)
    room.finalized_at = timezone.now()
    room.save()
    return room


def add_stream_recording(room: Room, login: str, offset: float) -> Recording:
    """A per-stream Recording row (its file is not written here)."""
    participant = Participant.objects.create(room=room, login=login, state=Participant.State.LEFT)
    recording = Recording(
        room=room, participant=participant, participant_login=login, start_offset=offset,
        status=Recording.Status.DONE, audio_codec="opus", video_codec="vp8",
    )
    recording.file_name = f"room-{room.pk}/stream-{recording.public_id}.webm"
    recording.save()
    return recording


def write_file(recording: Recording, color: str, seconds: float, frequency: int) -> None:
    """A VP8 + Opus WebM file of one colour and a tone, like a per-stream recording."""
    assert recording.path is not None
    recording.path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"color=c={color}:s=320x240:r=15:d={seconds}",
            "-f", "lavfi", "-i", f"sine=f={frequency}:d={seconds}:r=48000",
            "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
            "-c:a", "libopus", str(recording.path),
        ],
        check=True, timeout=60,
    )


def frame_at(path: Path, moment: float) -> np.ndarray:
    """The decoded frame nearest ``moment`` seconds."""
    best: tuple[float, np.ndarray] | None = None
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            distance = abs(float(frame.time) - moment)
            if best is None or distance < best[0]:
                best = (distance, frame.to_ndarray(format="rgb24"))
    assert best is not None
    return best[1]


def tile_color(image: np.ndarray, slot: int, columns: int = 2, width: int = 320, height: int = 240) -> np.ndarray:
    """The mean colour of the middle of a tile (away from the name label)."""
    x, y = (slot % columns) * width, (slot // columns) * height
    return image[y + height // 4: y + height // 2, x + width // 4: x + width * 3 // 4].reshape(-1, 3).mean(axis=0)


def test_missing_inputs_fail_with_a_clear_reason_and_can_be_rerun() -> None:
    """A mix whose input files are missing is failed with the reason; once they exist, a re-run succeeds."""
    room = make_room("mix-missing", 3.0)
    first = add_stream_recording(room, "alice", 0.2)
    second = add_stream_recording(room, "bob", 0.5)
    mixed = mix_room(room.pk)
    assert mixed.kind == Recording.Kind.MIXED and mixed.status == Recording.Status.FAILED
    assert "input files missing: 2 of 2" in mixed.reason and first.public_id in mixed.reason
    assert not mixed.file_exists

    write_file(first, "red", 2.5, 440)
    write_file(second, "blue", 2.0, 660)
    result = enqueue_mix(room.pk, mixed.pk)
    with running_worker():
        wait_task(result)
    assert result.return_value == mixed.pk
    mixed.refresh_from_db()
    assert mixed.status == Recording.Status.DONE, mixed.reason
    assert mixed.reason == "" and mixed.progress == 100.0 and mixed.file_exists
    assert Recording.objects.filter(room=room, kind=Recording.Kind.MIXED).count() == 1


def test_streams_are_placed_in_time() -> None:
    """A stream starting late is black before its start; one that stopped early freezes; audio is mixed."""
    room = make_room("mix-timeline", 4.0)
    early = add_stream_recording(room, "alice", 0.0)
    late = add_stream_recording(room, "bob", 1.5)
    write_file(early, "red", 2.0, 440)
    write_file(late, "blue", 2.5, 660)
    mixed = mix_room(room.pk)
    assert mixed.status == Recording.Status.DONE, mixed.reason
    assert mixed.duration is not None and abs(mixed.duration - 4.0) <= 0.4
    assert mixed.path is not None

    before = frame_at(mixed.path, 0.7)
    assert before.shape[:2] == (240, 640)  # two tiles side by side
    assert tile_color(before, 0)[0] > 180 and tile_color(before, 1).max() < 30, "late stream black before start"
    both = frame_at(mixed.path, 3.0)
    assert tile_color(both, 0)[0] > 180, "early stream frozen on its last frame"
    assert tile_color(both, 1)[2] > 180 and tile_color(both, 1)[0] < 60

    with av.open(str(mixed.path)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert float(np.sqrt(np.mean(samples**2))) > 0.05


def test_no_stream_recordings_is_a_failure() -> None:
    """A recorded room where nothing was published gets a failed mix saying so."""
    room = make_room("mix-empty", 1.0)
    mixed = mix_room(room.pk)
    assert mixed.status == Recording.Status.FAILED
    assert mixed.reason == "the room has no per-stream recordings to mix"


def test_rest_api_lists_and_downloads_for_authorised_users_only(client: Any, admin_client: Any) -> None:
    """Recordings over REST: refused without credentials; API key and staff see progress and download the file."""
    from rooms.models import APIKey

    room = make_room("mix-api", 2.0)
    recording = add_stream_recording(room, "alice", 0.0)
    write_file(recording, "green", 1.0, 440)
    mixed = Recording.objects.create(room=room, kind=Recording.Kind.MIXED, progress=42.0)

    assert client.get("/api/recordings").status_code in (401, 403)
    assert client.get(f"/api/recordings/{recording.public_id}/download").status_code in (401, 403)

    _, raw = APIKey.create_key("tests")
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {raw}"}
    listing = client.get("/api/recordings?room=mix-api", **auth).json()
    assert {r["id"] for r in listing["results"]} == {recording.public_id, mixed.public_id}
    detail = client.get(f"/api/recordings/{mixed.public_id}", **auth).json()
    assert detail["kind"] == "mixed" and detail["progress"] == 42.0 and detail["status"] == "recording"
    response = client.get(f"/api/recordings/{recording.public_id}/download", **auth)
    assert response.status_code == 200 and response["Content-Type"] == "video/webm"
    assert b"".join(response.streaming_content) == recording.path.read_bytes()  # type: ignore[union-attr]
    assert client.get(f"/api/recordings/{mixed.public_id}/download", **auth).status_code == 404

    staff = admin_client.get(f"/api/recordings/{recording.public_id}")
    assert staff.status_code == 200 and staff.json()["download_url"].endswith("/download")
    page = admin_client.get("/admin/rooms/recording/")
    assert page.status_code == 200 and b"download" in page.content and b"42%" in page.content


def test_admin_rerun_action_queues_the_mix(admin_client: Any) -> None:
    """The admin's re-run action mixes the room again; a failed mix becomes done once its inputs exist."""
    room = make_room("mix-admin", 2.0)
    recording = add_stream_recording(room, "alice", 0.0)
    mixed = mix_room(room.pk)
    assert mixed.status == Recording.Status.FAILED
    write_file(recording, "red", 1.5, 440)
    response = admin_client.post(
        "/admin/rooms/recording/", {"action": "rerun_mix", "_selected_action": [mixed.pk]}
    )
    assert response.status_code == 302
    with running_worker():  # runs the admin's job
        wait_for_status(mixed, Recording.Status.DONE)
    mixed.refresh_from_db()
    assert mixed.status == Recording.Status.DONE, mixed.reason
