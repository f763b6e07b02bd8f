"""The contract between rooms and the media relay: one vocabulary, every relay error mapped, the port wired."""

from __future__ import annotations

from media_relay import contract as c
from media_relay.port import media_events
from rooms import media
from rooms import protocol as p
from rooms.exceptions import ErrorCode
from rooms.media_events import RoomMediaEvents
from rooms.models import Stream


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
        p.STREAM_PLAYING, p.STREAM_STOPPED, p.STREAM_FAILED, p.STREAM_UNPUBLISHED
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
