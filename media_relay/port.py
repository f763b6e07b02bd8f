"""The port through which the relay reports results: an interface that the layer above implements.

The relay never imports that layer.  It calls :func:`media_events` and awaits
one method per result type of :mod:`media_relay.contract`; the layer above
registers its implementation once at start-up with :func:`set_media_events`
(rooms does it in its ``AppConfig.ready``), so both the in-process worker and
``manage.py runmedia`` workers report through it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from media_relay.contract import (
    Acked,
    ActiveSpeakers,
    Answer,
    CommandFailed,
    LayersWanted,
    PlaybackStatus,
    PublicationEnded,
    PublicationFlowing,
    RecordingFinished,
    RecordingTarget,
    WorkerGone,
)

logger = logging.getLogger(__name__)


class MediaEvents(Protocol):
    """What the relay tells the layer above; every method may touch the database (it is async)."""

    async def answer(self, result: Answer) -> None:
        """Send the SDP answer to the asking connection."""

    async def command_failed(self, result: CommandFailed) -> None:
        """Tell the asking connection that its command failed (and fail the stream of a failed publish)."""

    async def acked(self, result: Acked) -> None:
        """Acknowledge a command to the asking connection."""

    async def publication_flowing(self, result: PublicationFlowing) -> RecordingTarget | None:
        """Media flows: mark the stream live; answer where to record it, or None."""

    async def publication_ended(self, result: PublicationEnded) -> None:
        """A publication ended on the relay."""

    async def playback_status(self, result: PlaybackStatus) -> None:
        """Tell a player that its playback started, stopped or failed."""

    async def worker_gone(self, result: WorkerGone) -> None:
        """A dead worker's publications are lost."""

    async def layers_wanted(self, result: LayersWanted) -> None:
        """Tell a simulcast publisher which layers to send (dynacast)."""

    async def active_speakers(self, result: ActiveSpeakers) -> None:
        """Tell a placement who speaks."""

    async def recording_finished(self, result: RecordingFinished) -> None:
        """A recording's file is closed (or its writer failed)."""


class UnwiredMediaEvents:
    """The port before anything is registered: results are logged and dropped."""

    async def answer(self, result: Answer) -> None:
        logger.warning("no media events handler: dropped %r", result)

    async def command_failed(self, result: CommandFailed) -> None:
        logger.warning("no media events handler: dropped %r", result)

    async def acked(self, result: Acked) -> None:
        logger.warning("no media events handler: dropped %r", result)

    async def publication_flowing(self, result: PublicationFlowing) -> RecordingTarget | None:
        logger.warning("no media events handler: dropped %r", result)
        return None

    async def publication_ended(self, result: PublicationEnded) -> None:
        logger.warning("no media events handler: dropped %r", result)

    async def playback_status(self, result: PlaybackStatus) -> None:
        logger.warning("no media events handler: dropped %r", result)

    async def worker_gone(self, result: WorkerGone) -> None:
        logger.warning("no media events handler: dropped %r", result)

    async def layers_wanted(self, result: LayersWanted) -> None:
        logger.warning("no media events handler: dropped %r", result)

    async def active_speakers(self, result: ActiveSpeakers) -> None:
        logger.warning("no media events handler: dropped %r", result)

    async def recording_finished(self, result: RecordingFinished) -> None:
        logger.warning("no media events handler: dropped %r", result)


_events: MediaEvents = UnwiredMediaEvents()


def set_media_events(events: MediaEvents) -> None:
    """Register the implementation of the port (once, at start-up)."""
    global _events
    _events = events


def media_events() -> MediaEvents:
    """The registered implementation of the port."""
    return _events
