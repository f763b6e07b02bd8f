"""Publishing and playing media with aiortc: the SDK's side of the media relay.

stream = await room.publish(video=track, audio=track, kind="camera")
await stream.wait_for(STREAM_STATUS.PUBLISHING)
playing = await participant.get_streams()[0].play()
frame = await playing.video.recv()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from roomapi import recovery
from roomapi.constants import ERROR_CODE, QUALITY, STREAM_STATUS
from roomapi.errors import RoomApiError
from roomapi.session import InRoom, Session

logger = logging.getLogger(__name__)

StatusCallback = Callable[[Any], Any]
TERMINAL = (STREAM_STATUS.UNPUBLISHED, STREAM_STATUS.FAILED, STREAM_STATUS.STOPPED)


class StreamInfo(Protocol):
    """A remote stream as playing it needs it (roomapi.objects.Stream)."""

    id: str
    has_audio: bool
    has_video: bool


RELAY = "relay"
"""``ice_transport_policy`` that gathers TURN relay candidates only (WebRTC's ``iceTransportPolicy: "relay"``)."""


def ice_servers_from_wire(entries: Any) -> list[RTCIceServer]:
    """The ``ice_servers`` of ``established`` as aiortc ICE servers (malformed entries are skipped)."""
    servers = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("urls"):
            servers.append(
                RTCIceServer(urls=entry["urls"], username=entry.get("username"), credential=entry.get("credential"))
            )
    return servers


def _configuration(session: Session, ice_servers: list[RTCIceServer] | None) -> RTCConfiguration:
    """The session's ICE servers (or the application's own) and transport policy.

    Always an explicit list: aiortc falls back to a public STUN server on None.
    """
    servers = list(session.ice_servers if ice_servers is None else ice_servers)
    policy = RTCIceTransportPolicy.RELAY if session.ice_transport_policy == RELAY else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def _check_relay_candidates(pc: RTCPeerConnection, session: Session) -> None:
    """Relay-only ICE that gathered nothing cannot connect: say why instead of timing out on the server."""
    if session.ice_transport_policy != RELAY:
        return
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        if transport is not None and transport.transport.iceGatherer.getLocalCandidates():
            return
    raise RoomApiError(
        ERROR_CODE.ICE_FAILED,
        "relay-only ICE gathered no relay candidate: the TURN server refused the credential or cannot be reached",
    )


def _prefer(transceiver: Any, kind: str, codec: str | None) -> None:
    if not codec:
        return
    wanted = codec.lower()
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in capabilities if c.mimeType.split("/")[1].lower() == wanted]
    if not chosen:
        raise ValueError(f"codec {codec!r} is not supported for {kind}")
    rtx = [c for c in capabilities if c.mimeType.lower().endswith("/rtx")]
    transceiver.setCodecPreferences(chosen + rtx)


class _StatusMixin:
    """Status, callbacks and waiting, shared by published and played streams."""

    def _init_status(self, status: str) -> None:
        self._status = status
        self.reason = ""
        self._callbacks: dict[str, list[StatusCallback]] = {}
        self._waiters: list[tuple[str, asyncio.Future[None]]] = []
        self._seen: set[str] = set()

    def status(self) -> str:
        """The current STREAM_STATUS value."""
        return self._status

    def on(self, status: str, callback: StatusCallback) -> Any:
        """Call ``callback(self)`` when the stream reaches ``status``; chainable."""
        self._callbacks.setdefault(status, []).append(callback)
        return self

    async def wait_for(self, status: str, timeout: float = 10.0) -> None:
        """Wait (bounded) until the stream has reached ``status``.

        Raises RoomApiError if the stream ends first: ``media_failed`` when it FAILED, else
        ``stream_not_publishing`` (UNPUBLISHED, STOPPED).
        """
        if status in self._seen:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((status, future))
        await asyncio.wait_for(future, timeout)

    def _set_status(self, status: str, reason: str = "") -> None:
        self._status = status
        self.reason = reason
        self._seen.add(status)
        for wanted, future in list(self._waiters):
            if wanted == status and not future.done():
                future.set_result(None)
            elif status in TERMINAL and not future.done():
                code = ERROR_CODE.MEDIA_FAILED if status == STREAM_STATUS.FAILED else ERROR_CODE.STREAM_NOT_PUBLISHING
                future.set_exception(RoomApiError(code, reason or f"stream is {status}"))
        self._waiters = [w for w in self._waiters if not w[1].done()]
        for callback in self._callbacks.get(status, []):
            self._connection()._call(callback, self)

    def _connection(self) -> Session:
        raise NotImplementedError


class PublishedStream(_StatusMixin):
    """One of our own streams, published into the room."""

    def __init__(self, room: InRoom, pc: RTCPeerConnection, kind: str) -> None:
        self.room = room
        self.pc = pc
        self.kind = kind
        self.id = ""
        self.recipe: dict[str, Any] = {}
        """The arguments of :func:`publish` (tracks and options), to publish again after a resume."""
        self.audio_muted = False
        self.video_muted = False
        self._init_status(STREAM_STATUS.NEW)
        self._early: list[dict[str, Any]] = []

    def _connection(self) -> Session:
        return self.room.connection

    def name(self) -> str:
        """The stream's id (the name others play it by)."""
        return self.id

    def is_audio_muted(self) -> bool:
        return self.audio_muted

    def is_video_muted(self) -> bool:
        return self.video_muted

    async def mute_audio(self) -> None:
        """Stop sending audio to the room (the relay stops forwarding it)."""
        await self._mute(audio=True)

    async def unmute_audio(self) -> None:
        await self._mute(audio=False)

    async def mute_video(self) -> None:
        """Stop sending video to the room."""
        await self._mute(video=True)

    async def unmute_video(self) -> None:
        await self._mute(video=False)

    async def _mute(self, **flags: bool) -> None:
        await self.room.connection._request("mute", stream=self.id, **flags)
        self.audio_muted = flags.get("audio", self.audio_muted)
        self.video_muted = flags.get("video", self.video_muted)

    async def stop(self) -> None:
        """Unpublish and close the peer connection."""
        try:
            if self._status in (STREAM_STATUS.PENDING, STREAM_STATUS.PUBLISHING) and self.id:
                await self.room.connection._request("unpublish", stream=self.id)
        finally:
            await self._close()

    async def _close(self) -> None:
        self.room.connection._remove_listener("stream_status", self._on_status)
        self.room.connection._media.discard(self)
        await self.pc.close()

    # --- re-established after a resume (roomapi.resume) ---

    async def _suspend(self) -> None:
        """The session dropped: close the peer connection, keep the object (PENDING) for the resume."""
        self._seen.clear()
        self._set_status(STREAM_STATUS.PENDING, "reconnecting")
        await self.pc.close()

    def _adopt(self, fresh: PublishedStream) -> None:
        """Take over the peer connection and stream id of ``fresh``, published again after a resume."""
        connection = self.room.connection
        connection._remove_listener("stream_status", fresh._on_status)
        connection._media.discard(fresh)
        connection._media.add(self)
        self.pc, self.id = fresh.pc, fresh.id
        if fresh._status != self._status:
            self._set_status(fresh._status, fresh.reason)

    def _on_status(self, event: dict[str, Any]) -> None:
        stream = event.get("stream") or {}
        if not self.id:
            self._early.append(event)
            return
        if stream.get("id") != self.id:
            return
        status = str(event.get("status"))
        self.audio_muted = bool(stream.get("audio_muted", self.audio_muted))
        self.video_muted = bool(stream.get("video_muted", self.video_muted))
        self._set_status(status, str(event.get("reason", "")))
        if status in TERMINAL:
            self._closing = asyncio.ensure_future(self._close())


class PlayingStream(_StatusMixin):
    """A remote stream we play: ``video`` and ``audio`` are aiortc tracks to read frames from.

    ``wanted_quality`` is the QUALITY asked for; ``quality`` the layer the relay forwards (``low``, ``medium`` or
    ``high``; None before video flows), updated by each PLAYING status.
    """

    def __init__(self, room: InRoom, stream: StreamInfo, pc: RTCPeerConnection, quality: str = QUALITY.AUTO) -> None:
        self.room = room
        self.stream = stream
        self.pc = pc
        self.id = ""
        self.video: MediaStreamTrack | None = None
        self.audio: MediaStreamTrack | None = None
        self.wanted_quality = quality
        self.quality: str | None = None
        self._init_status(STREAM_STATUS.NEW)
        self._early: list[dict[str, Any]] = []
        self._recovery: list[asyncio.Task[None]] = []
        self._quality_waiters: list[tuple[str, asyncio.Future[None]]] = []

    def _connection(self) -> Session:
        return self.room.connection

    async def set_quality(self, quality: str) -> None:
        """Ask for another quality while playing; the layer changes at its next keyframe (see ``quality``)."""
        await self.room.connection._request("set_quality", play=self.id, quality=quality)
        self.wanted_quality = quality

    async def wait_for_quality(self, quality: str, timeout: float = 10.0) -> None:
        """Wait (bounded) until the relay forwards the layer ``quality`` (``low``, ``medium`` or ``high``)."""
        if self.quality == quality:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._quality_waiters.append((quality, future))
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self._quality_waiters = [w for w in self._quality_waiters if w[1] is not future]

    async def stop(self) -> None:
        """Stop playing; the server answers STOPPED."""
        try:
            if self.id and self._status not in TERMINAL:
                await self.room.connection._request("stop", play=self.id)
                self._set_status(STREAM_STATUS.STOPPED, "stopped")
        finally:
            await self._close()

    async def _close(self) -> None:
        for task in self._recovery:
            task.cancel()
        self.room.connection._remove_listener("play_status", self._on_status)
        self.room.connection._remove_listener("unpublished", self._on_unpublished)
        self.room.connection._media.discard(self)
        await self.pc.close()

    # --- re-established after a resume (roomapi.resume) ---

    async def _suspend(self) -> None:
        """The session dropped: close the peer connection, keep the object (PENDING) for the resume."""
        self._seen.clear()
        self._set_status(STREAM_STATUS.PENDING, "reconnecting")
        await self.pc.close()

    def _adopt(self, fresh: PlayingStream) -> None:
        """Take over the peer connection, play id and tracks of ``fresh``, played again after a resume."""
        connection = self.room.connection
        connection._remove_listener("play_status", fresh._on_status)
        connection._remove_listener("unpublished", fresh._on_unpublished)
        connection._media.discard(fresh)
        connection._media.add(self)
        self.pc, self.id, self.video, self.audio = fresh.pc, fresh.id, fresh.video, fresh.audio
        if fresh._status != self._status:
            self._set_status(fresh._status, fresh.reason)

    def _on_unpublished(self, event: dict[str, Any]) -> None:
        """The room says the stream ended (even if its media worker could not tell us)."""
        if (event.get("stream") or {}).get("id") == self.stream.id and self._status not in TERMINAL:
            self._on_status({"play": self.id, "status": STREAM_STATUS.UNPUBLISHED, "reason": "unpublished"})

    def _on_status(self, event: dict[str, Any]) -> None:
        if not self.id:
            self._early.append(event)
            return
        if event.get("play") != self.id:
            return
        status = str(event.get("status"))
        if status == STREAM_STATUS.STOPPED and self._status == STREAM_STATUS.STOPPED:
            return
        if status == STREAM_STATUS.PLAYING and event.get("quality"):
            self.quality = str(event["quality"])
            for wanted, future in self._quality_waiters:
                if wanted == self.quality and not future.done():
                    future.set_result(None)
        self._set_status(status, str(event.get("reason", "")))
        if status in TERMINAL:
            self._closing = asyncio.ensure_future(self._close())


async def close_all(connection: Session) -> None:
    """Close every peer connection of a connection (on disconnect)."""
    for item in list(connection._media):
        await item._close()


async def publish(
    room: InRoom,
    *,
    video: MediaStreamTrack | None = None,
    audio: MediaStreamTrack | None = None,
    kind: str = "camera",
    record: bool = False,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    ice_servers: list[RTCIceServer] | None = None,
) -> PublishedStream:
    """Publish tracks into the room; the result turns PUBLISHING when media flows."""
    if video is None and audio is None:
        raise ValueError("publish needs a video or an audio track")
    pc = RTCPeerConnection(_configuration(room.connection, ice_servers))
    if video is not None:
        _prefer(pc.addTransceiver(video, direction="sendonly"), "video", video_codec)
    if audio is not None:
        _prefer(pc.addTransceiver(audio, direction="sendonly"), "audio", audio_codec)
    stream = PublishedStream(room, pc, kind)
    connection = room.connection
    connection._add_listener("stream_status", stream._on_status)
    await _negotiate(stream, "publish", "pc", kind=kind, record=record)
    return stream


async def play(
    room: InRoom, stream: StreamInfo, ice_servers: list[RTCIceServer] | None = None, quality: str = QUALITY.AUTO
) -> PlayingStream:
    """Play a PUBLISHING stream of the room; the result turns PLAYING when media arrives.

    ``quality`` (a QUALITY value) caps the layer forwarded from a simulcast stream.
    """
    pc = RTCPeerConnection(_configuration(room.connection, ice_servers))
    playing = PlayingStream(room, stream, pc, quality)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            playing.video = track
        elif track.kind == "audio":
            playing.audio = track

    if stream.has_video or not stream.has_audio:
        pc.addTransceiver("video", direction="recvonly")
    if stream.has_audio or not stream.has_video:
        pc.addTransceiver("audio", direction="recvonly")
    connection = room.connection
    connection._add_listener("play_status", playing._on_status)
    connection._add_listener("unpublished", playing._on_unpublished)
    await _negotiate(playing, "play", "play", stream=stream.id, quality=quality)
    for transceiver in pc.getTransceivers():
        task = recovery.install(transceiver.receiver)
        if task is not None:
            playing._recovery.append(task)
    return playing


async def _negotiate(item: PublishedStream | PlayingStream, command: str, id_field: str, **fields: Any) -> None:
    """Offer, send ``command`` with the SDP, apply the answer; statuses that came early are replayed."""
    connection = item.room.connection
    connection._media.add(item)
    item._set_status(STREAM_STATUS.PENDING)
    try:
        await item.pc.setLocalDescription(await item.pc.createOffer())
        _check_relay_candidates(item.pc, connection)
        reply = await connection._request(command, sdp=item.pc.localDescription.sdp, **fields)
        item.id = str(reply[id_field])
        await item.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
    except BaseException:
        await item._close()
        raise
    for event in item._early:
        item._on_status(event)
    item._early.clear()
