"""The typed contract between rooms and the media relay: commands in, results out.

Commands travel over the channel layer to one worker's channel, so they are
plain ``TypedDict``s (msgpack-serializable), each with its ``type``; the worker
routes them by that type.  Results stay inside the worker's process: they are
frozen dataclasses handed to the :class:`media_relay.port.MediaEvents` port,
which rooms implements.

The relay knows packets, peers, tracks and files.  ``placement`` is an opaque
key the client pins to one worker (rooms passes its room's primary key); the
relay never reads anything else into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

RequestId = str | int | None
"""A client's request id, echoed in the reply that answers it."""


class MediaErrorCode(StrEnum):
    """Errors the relay reports; the values are the Room API protocol's codes (rooms maps them in one place)."""

    INVALID_SDP = "invalid_sdp"
    INVALID_FIELD = "invalid_field"
    STREAM_NOT_PUBLISHING = "stream_not_publishing"
    PLAY_NOT_FOUND = "play_not_found"
    MEDIA_UNAVAILABLE = "media_unavailable"
    MEDIA_FAILED = "media_failed"
    TOO_MANY_PLAYS = "too_many_plays"
    TOO_MANY_PENDING = "too_many_pending"
    TOO_MANY_CANDIDATES = "too_many_candidates"
    CANDIDATE_REFUSED = "candidate_refused"


class MediaError(Exception):
    """A media operation failed: a :class:`MediaErrorCode` and a human reason."""

    def __init__(self, code: MediaErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = MediaErrorCode(code)
        self.message = message


class PublicationStatus(StrEnum):
    """How a publication ended."""

    FAILED = "FAILED"
    UNPUBLISHED = "UNPUBLISHED"


class PlaybackState(StrEnum):
    """What a playback is doing (the values are the protocol's play statuses)."""

    PLAYING = "PLAYING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"
    UNPUBLISHED = "UNPUBLISHED"


# --- Commands: rooms -> a media worker's channel --------------------------------------

PUBLISH: Literal["media.publish"] = "media.publish"
PLAY: Literal["media.play"] = "media.play"
STOP: Literal["media.stop"] = "media.stop"
ICE: Literal["media.ice"] = "media.ice"
MUTE: Literal["media.mute"] = "media.mute"
SET_QUALITY: Literal["media.set_quality"] = "media.set_quality"
PARTICIPANT_GONE: Literal["media.participant_gone"] = "media.participant_gone"
STREAMS_CLOSED: Literal["media.streams_closed"] = "media.streams_closed"
RELAY_TO: Literal["media.relay_to"] = "media.relay_to"
RELAY_STOP: Literal["media.relay_stop"] = "media.relay_stop"
RELAY_CLOSED: Literal["media.relay_closed"] = "media.relay_closed"


class TrackInfo(TypedDict):
    """One track of a publication as a playing worker needs it (cascading): its codec and simulcast rids."""

    kind: str
    mime_type: str
    clock_rate: int
    channels: int
    payload_type: int
    parameters: dict[str, str | int | None]
    rids: list[str]


class OriginInfo(TypedDict):
    """Where a stream is published (its origin worker) and what its tracks are (cascading)."""

    worker_id: str
    channel: str
    host: str
    port: int
    tracks: list[TrackInfo]


class PublishCommand(TypedDict):
    """Answer a publisher's offer for ``stream_id``."""

    type: Literal["media.publish"]
    placement: int
    participant_id: int
    stream_id: str
    sdp: str
    reply_channel: str
    rid: RequestId


class PlayCommand(TypedDict):
    """Answer a player's receive-only offer for a publishing stream.

    ``quality``: the video quality wanted from a simulcast stream (``low``, ``medium``, ``high``, ``auto``).
    """

    type: Literal["media.play"]
    placement: int
    participant_id: int
    stream_id: str
    play_id: str
    sdp: str
    quality: str
    reply_channel: str
    rid: RequestId
    origin: NotRequired[OriginInfo]
    """Set when the stream is published on another worker: this worker plays it from a relayed copy."""


class SetQualityCommand(TypedDict):
    """Change the video quality one playback of the asking connection wants."""

    type: Literal["media.set_quality"]
    placement: int
    play_id: str
    quality: str
    reply_channel: str
    rid: RequestId


class StopCommand(TypedDict):
    """Stop one playback of the asking connection."""

    type: Literal["media.stop"]
    placement: int
    play_id: str
    reply_channel: str
    rid: RequestId


class IceCommand(TypedDict):
    """A trickled candidate (None: end of candidates) for one of the participant's peer connections."""

    type: Literal["media.ice"]
    placement: int
    participant_id: int
    pc_id: str
    candidate: str | None
    sdp_mid: str | None
    sdp_mline_index: int | None
    reply_channel: str
    rid: RequestId


class MuteCommand(TypedDict):
    """Stop (True) or resume (False) forwarding a stream's audio and video."""

    type: Literal["media.mute"]
    stream_id: str
    audio: bool
    video: bool


class ParticipantGoneCommand(TypedDict):
    """Close every peer connection of a participant."""

    type: Literal["media.participant_gone"]
    placement: int
    participant_id: int


class StreamsClosedCommand(TypedDict):
    """Publications ended elsewhere, and placements whose publications all end."""

    type: Literal["media.streams_closed"]
    stream_ids: list[str]
    placements: list[int]


class RelayToCommand(TypedDict):
    """Worker to worker (cascading): send one copy of a publication's packets to a playing worker's socket.

    ``feeds``: the playing worker's feed id for each track (kind).
    """

    type: Literal["media.relay_to"]
    stream_id: str
    worker_id: str
    channel: str
    host: str
    port: int
    feeds: dict[str, int]


class RelayStopCommand(TypedDict):
    """Worker to worker (cascading): the playing worker has no more players of the stream."""

    type: Literal["media.relay_stop"]
    stream_id: str
    worker_id: str


class RelayClosedCommand(TypedDict):
    """Worker to worker (cascading): the origin closed the publication (or cannot relay it)."""

    type: Literal["media.relay_closed"]
    stream_id: str
    reason: str


Command = (
    PublishCommand
    | PlayCommand
    | StopCommand
    | SetQualityCommand
    | IceCommand
    | MuteCommand
    | ParticipantGoneCommand
    | StreamsClosedCommand
    | RelayToCommand
    | RelayStopCommand
    | RelayClosedCommand
)


# --- Results: a media worker -> the MediaEvents port --------------------------------------


@dataclass(frozen=True)
class Answer:
    """The relay's SDP answer to a publish (``play_id`` None) or a play."""

    reply_channel: str
    rid: RequestId
    pc_id: str
    stream_id: str
    play_id: str | None
    sdp: str


@dataclass(frozen=True)
class CommandFailed:
    """A command was refused or failed; ``stream_id`` is set when a publish failed (its stream fails)."""

    reply_channel: str
    rid: RequestId
    code: MediaErrorCode
    text: str
    stream_id: str | None = None


@dataclass(frozen=True)
class Acked:
    """A command (stop, ice) was carried out."""

    reply_channel: str
    rid: RequestId


@dataclass(frozen=True)
class RecordingFormat:
    """What the relay can record of a publication: the file's extension and the recorded codecs."""

    extension: str
    audio_codec: str = ""
    video_codec: str = ""


@dataclass(frozen=True)
class PublicationFlowing:
    """The first media packet of a publication arrived."""

    stream_id: str
    codecs: dict[str, str] = field(default_factory=dict)
    """Negotiated codec name by kind (``audio``, ``video``)."""
    recording_format: RecordingFormat | None = None
    """None when none of its tracks can be recorded."""


@dataclass(frozen=True)
class RecordingTarget:
    """Where to record a flowing publication; ``token`` names the recording in :class:`RecordingFinished`."""

    path: Path
    token: str


@dataclass(frozen=True)
class PublicationEnded:
    """A publication ended on the relay (its peer failed, its publisher left, its worker stopped)."""

    stream_id: str
    status: PublicationStatus
    reason: str


@dataclass(frozen=True)
class PlaybackStatus:
    """A playback started, stopped or failed."""

    reply_channel: str
    play_id: str
    stream_id: str
    status: PlaybackState
    reason: str = ""
    quality: str | None = None
    """The video layer forwarded (``low``, ``medium``, ``high``); None without video or when not playing."""


@dataclass(frozen=True)
class LayersWanted:
    """Dynacast: the simulcast layers (rids) of a publication that some player wants; tell its publisher."""

    reply_channel: str
    """The publisher's connection."""
    stream_id: str
    rids: tuple[str, ...]


@dataclass(frozen=True)
class ActiveSpeakers:
    """The streams of a placement whose audio speaks now, loudest first (empty: nobody)."""

    placement: int
    stream_ids: tuple[str, ...]


@dataclass(frozen=True)
class WorkerGone:
    """A media worker died: its publications are lost (its placements were unpinned)."""

    worker_id: str
    stream_ids: tuple[str, ...]
    placements: tuple[int, ...]


@dataclass(frozen=True)
class RecordingFinished:
    """A recording's writer finished; ``failure`` is empty when the file was closed normally."""

    token: str
    first_packet_at: float | None = None
    """Unix time of the first packet written (None: nothing was written)."""
    failure: str = ""
    detail: str = ""
    """The writer's last words, for a reason when the file turns out empty."""
    stopped: str = ""
    """Why the relay stopped a good recording early (a cap of media_relay.recording.limits reached)."""
