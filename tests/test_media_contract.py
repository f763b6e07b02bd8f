"""The contract between rooms and the media relay: one vocabulary, every relay error mapped, the port wired."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async as db

from media_relay import contract as c
from media_relay.port import media_events
from media_relay.reaper import reap_dead_workers
from media_relay.registry import WorkerInfo, registry
from rooms import media
from rooms import protocol as p
from rooms.exceptions import ErrorCode
from rooms.media_events import WORKER_GONE_REASON, RoomMediaEvents
from rooms.models import Room, Stream
from tests.roomclient import RoomClient, add_live_stream


def test_every_relay_error_maps_to_the_protocol_code_of_the_same_value() -> None:
    """MediaErrorCode values are protocol error codes, and rooms maps each one onto itself."""
    codes = {value for key, value in vars(ErrorCode).items() if not key.startswith("_") and isinstance(value, str)}
    for code in c.MediaErrorCode:
        assert media.error_code(code) == code.value
        assert code.value in codes, code


def test_relay_statuses_are_protocol_statuses() -> None:
    """A publication's end status is a stream status; a playback state is a play status of the protocol."""
    assert {s.value for s in c.PublicationStatus} <= {str(s) for s in Stream.Status}
    assert {s.value for s in c.PlaybackState} == {
        p.PlayStatus.PLAYING, p.PlayStatus.STOPPED, p.PlayStatus.FAILED, p.PlayStatus.UNPUBLISHED
    }


def test_media_error_takes_only_contract_codes() -> None:
    """A relay error carries a MediaErrorCode, also when raised with the code's text."""
    error = c.MediaError("invalid_sdp", "the offer was refused")
    assert error.code is c.MediaErrorCode.INVALID_SDP and error.message == "the offer was refused"
    room_error = media.room_error(error)
    assert room_error.code == ErrorCode.INVALID_SDP and room_error.message == "the offer was refused"


def test_rooms_registers_its_implementation_of_the_port() -> None:
    """RoomsConfig.ready plugs rooms into the relay's port (the in-process worker and runmedia both use it)."""
    assert isinstance(media_events(), RoomMediaEvents)


@pytest.mark.django_db(transaction=True)
async def test_a_dead_worker_is_reported_and_rooms_fails_its_streams() -> None:
    """The reaper tells the port WorkerGone; rooms FAILS the lost stream and its publisher hears why."""
    bob = await RoomClient.open("bob")
    await bob.join("reaped")
    stream_id = await add_live_stream("reaped", "bob")
    room = await db(Room.objects.get)(name="reaped")
    reg = registry()
    dead = WorkerInfo("dead-worker", "nowhere", 1, time.time() - 60, (stream_id,), (room.pk,))
    await reg.announce(dead)
    await reg.pin(room.pk, dead.worker_id)
    await reap_dead_workers()  # another live process's heartbeat may claim it first: the outcome is the same
    status = await bob.until("stream_status")
    assert status["status"] == "FAILED" and status["reason"] == WORKER_GONE_REASON
    assert (await db(Stream.objects.get)(public_id=stream_id)).status == Stream.Status.FAILED
    assert await reg.pinned(room.pk) is None
    await bob.close()
