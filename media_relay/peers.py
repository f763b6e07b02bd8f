"""Peer connections of the relay: publications (ingest) and playbacks (egress)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import candidate_from_sdp
from django.conf import settings

from media_relay.aiortc_compat import (
    ReceiverLink,
    SenderLink,
    accept_extensions,
    fast_receive,
    media_codecs,
    negotiated_codecs,
    negotiated_extensions,
    prefer_dtls_server,
    share_consent_timer,
    share_report_timer,
)
from media_relay.bandwidth import WANTED_QUALITIES, LayerChooser
from media_relay.contract import MediaError, MediaErrorCode
from media_relay.forwarding import DownTrack, Ingest
from media_relay.recovery import retry_nacks
from media_relay.simulcast import (
    SIMULCAST_EXTENSIONS,
    answer_layers,
    layer_for,
    offered_extensions,
    offered_layers,
    quality_of,
)
from media_relay.speakers import ActiveSpeakers
from media_relay.stats import PEER_CONNECTIONS

logger = logging.getLogger(__name__)

Callback = Callable[..., Awaitable[None]]

REMOTE_CLOSED = "the peer closed its connection"
"""The reason a session ends when its remote peer closed the connection (DTLS close_notify): not a failure."""


def rtc_configuration() -> RTCConfiguration:
    """ICE servers from MEDIA_ICE_SERVERS; always an explicit list (never aiortc's public STUN)."""
    try:
        entries = json.loads(settings.MEDIA_ICE_SERVERS or "[]")
    except ValueError:
        logger.error("MEDIA_ICE_SERVERS is not valid JSON; using no ICE servers")
        entries = []
    servers = [
        RTCIceServer(urls=e["urls"], username=e.get("username"), credential=e.get("credential"))
        for e in entries
        if isinstance(e, dict) and e.get("urls")
    ]
    return RTCConfiguration(iceServers=servers)


AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
PLAYER_EXTENSIONS = {"audio": AUDIO_LEVEL_URI, "video": ABS_SEND_TIME_URI}
"""The one header extension the relay writes on what it forwards, per kind (when the player negotiated it)."""

SIMULCAST_START_KBPS = 1000
"""A simulcast publisher's browser starts its bandwidth estimate here (at most MEDIA_PUBLISHER_MAX_BITRATE): enough
for the two lower layers at once and the top one within seconds (see media_relay.simulcast.answer_layers)."""

_HOST_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ )(\S+)( \d+ typ host.*)$", re.IGNORECASE | re.MULTILINE)


def advertise(sdp: str) -> str:
    """Replace host candidate addresses with MEDIA_ADVERTISED_ADDRESS when it is set."""
    address = settings.MEDIA_ADVERTISED_ADDRESS
    if not address:
        return sdp
    return _HOST_CANDIDATE.sub(lambda m: f"{m.group(1)}{address}{m.group(3)}", sdp)


class IdleTrack(MediaStreamTrack):
    """A track that never yields: the relay writes RTP itself, aiortc's sender stays idle."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise AssertionError("unreachable")

    def stop(self) -> None:
        super().stop()
        if not self._never.done():
            self._never.cancel()


def codec_capability(codec: RTCRtpCodecParameters) -> RTCRtpCodecCapability:
    """The capability matching a negotiated codec (for setCodecPreferences)."""
    return RTCRtpCodecCapability(
        mimeType=codec.mimeType, clockRate=codec.clockRate, channels=codec.channels, parameters=dict(codec.parameters)
    )


def rtx_capability(kind: str, clock_rate: int) -> RTCRtpCodecCapability | None:
    """The RTX capability of a kind, if aiortc offers one."""
    for codec in RTCRtpSender.getCapabilities(kind).codecs:
        if codec.mimeType.lower().endswith("/rtx") and codec.clockRate == clock_rate:
            return codec
    return None


def parse_candidate(candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> Any:
    """An aiortc candidate from the browser's candidate line."""
    text = candidate[len("candidate:") :] if candidate.startswith("candidate:") else candidate
    try:
        parsed = candidate_from_sdp(text)
    except (ValueError, IndexError) as exc:
        raise MediaError(MediaErrorCode.INVALID_FIELD, f"bad ICE candidate: {exc}") from None
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = sdp_mline_index
    return parsed


def _log_task_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("media callback failed", exc_info=task.exception())


class PeerSession:
    """One peer connection with a connect deadline and a single close path."""

    def __init__(self, pc_id: str, participant_id: int, on_failed: Callable[[str], Awaitable[None]]) -> None:
        self.pc_id = pc_id
        self.participant_id = participant_id
        self.pc = RTCPeerConnection(rtc_configuration())
        PEER_CONNECTIONS.add(self.pc)
        self.closed = False
        self._on_failed = on_failed
        self._watchdog: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._state_changed)

    def start_watchdog(self) -> None:
        """FAIL the session if it is not connected within MEDIA_CONNECT_TIMEOUT."""
        self._watchdog = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        await asyncio.sleep(settings.MEDIA_CONNECT_TIMEOUT)
        if not self.closed and self.pc.connectionState != "connected":
            await self._on_failed(f"peer connection not established within {settings.MEDIA_CONNECT_TIMEOUT:g} s")

    async def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if state == "failed" and not self.closed:
            await self._on_failed("peer connection failed (ICE or DTLS)")
        elif state == "closed" and not self.closed:  # closed by the remote peer, not by us: it left
            await self._on_failed(REMOTE_CLOSED)
        elif state == "connected":
            await self.connected()

    async def connected(self) -> None:
        """Hook: the peer connection is up."""

    def share_timers(self) -> None:
        """After setLocalDescription: RTP/RTCP handled as it arrives, consent checks on the loop's timer wheel."""
        fast_receive(self.pc)
        share_consent_timer(self.pc)

    async def add_candidate(self, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        """A trickled remote candidate (None: end of candidates)."""
        if candidate:
            await self.pc.addIceCandidate(parse_candidate(candidate, sdp_mid, sdp_mline_index))

    async def close(self) -> None:
        """Close the peer connection and stop its timers (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        await self.pc.close()


class Publication(PeerSession):
    """A published stream: its publisher's peer connection and one Ingest per track."""

    def __init__(
        self,
        stream_id: str,
        room_id: int,
        participant_id: int,
        on_failed: Callable[[str], Awaitable[None]],
        on_media: Callable[[Publication], Awaitable[None]],
        speakers: ActiveSpeakers | None = None,
        on_layers_wanted: Callable[[set[str]], None] | None = None,
    ) -> None:
        super().__init__(stream_id, participant_id, on_failed)
        self.stream_id = stream_id
        self.room_id = room_id
        self.ingests: dict[str, Ingest] = {}
        self.playbacks: set[Playback] = set()
        self._on_media = on_media
        self.publishing = False
        self._remb: asyncio.Future[None] | None = None
        self._nack_retries: list[asyncio.Future[None]] = []
        self.speakers = speakers
        """The room's active speaker detector, fed with this publication's audio levels."""
        self.rids: list[str] = []
        """The simulcast layers of the video (rids, lowest first); empty without simulcast."""
        self.on_layers_wanted = on_layers_wanted
        """Dynacast: called with the rids some player (or a recorder) wants, when that set changes."""
        self.layers_wanted: set[str] | None = None
        self.relays = 0
        """How many other workers this publication is relayed to (cascading): they may want any layer."""

    async def answer(self, offer_sdp: str) -> str:
        """Answer the publisher's offer; install the forward path on each received track.

        A simulcast video (``a=simulcast:send`` with rids) is answered with ``a=simulcast:recv``, after the
        rtp-stream-id extensions were accepted for it.
        """
        layers = offered_layers(offer_sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:
            raise MediaError(MediaErrorCode.INVALID_SDP, f"the offer was refused: {exc}") from None
        answered: dict[str, list[str]] = {}
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind in ("audio", "video") and transceiver.kind not in self.ingests:
                rids = layers.get(transceiver.mid or "") if transceiver.kind == "video" else None
                if rids:
                    offered = offered_extensions(offer_sdp, transceiver.mid or "")
                    accept_extensions(transceiver, {u: offered[u] for u in SIMULCAST_EXTENSIONS if u in offered})
                    answered[transceiver.mid or ""] = rids
                    self.rids = list(rids)
                link = ReceiverLink(transceiver.receiver)
                ingest = Ingest(transceiver.kind, link, self._first_packet, settings.MEDIA_PLI_INTERVAL, rids=rids)
                negotiated = media_codecs(transceiver)
                ingest.codec = negotiated[0] if negotiated else None
                if transceiver.kind == "audio" and self.speakers is not None:
                    ingest.on_audio_level = self._audio_level
                self.ingests[transceiver.kind] = ingest
        if not self.ingests:
            raise MediaError(MediaErrorCode.INVALID_SDP, "the offer has no audio or video to publish")
        prefer_dtls_server(self.pc, offer_sdp)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self.share_timers()
        self.start_watchdog()
        start_kbps = min(SIMULCAST_START_KBPS, settings.MEDIA_PUBLISHER_MAX_BITRATE // 1000)
        return advertise(answer_layers(self.pc.localDescription.sdp, answered, start_kbps))

    def _audio_level(self, level: int) -> None:
        if self.speakers is not None:
            self.speakers.observe(self.stream_id, level)

    def update_layers_wanted(self) -> None:
        """Dynacast: recompute which layers are wanted (those up to the highest quality any player wants, the
        top one when recorded, the lowest always) and report a change through ``on_layers_wanted``."""
        ingest = self.ingests.get("video")
        if not self.rids or ingest is None:
            return
        count = len(self.rids)
        highest = 0
        for playback in self.playbacks:
            if "video" in playback.chooser_quality:
                highest = max(highest, layer_for(playback.chooser_quality["video"], count))
        if ingest.sinks or self.relays:
            highest = count - 1
        wanted = set(self.rids[: highest + 1])
        if wanted != self.layers_wanted:
            self.layers_wanted = wanted
            if self.on_layers_wanted is not None:
                try:
                    self.on_layers_wanted(set(wanted))
                except Exception:
                    logger.exception("layers-wanted callback failed")

    async def connected(self) -> None:
        if self._remb is None:
            self._remb = asyncio.ensure_future(self._cap_bitrate())
            self._nack_retries = [asyncio.ensure_future(retry_nacks(i)) for i in self.ingests.values()]

    async def _cap_bitrate(self) -> None:
        """Once a second, a REMB with MEDIA_PUBLISHER_MAX_BITRATE for each video track; layer bitrates measured."""
        while not self.closed:
            for ingest in self.ingests.values():
                ingest.measure(time.monotonic())
            for playback in list(self.playbacks):
                playback.rechoose()  # a layer that came back (dynacast resumed it) or went away
            for ingest in self.ingests.values():  # one REMB per video track, however many play it
                try:
                    await ingest.send_bitrate_cap(settings.MEDIA_PUBLISHER_MAX_BITRATE)
                except ConnectionError:
                    pass
            await asyncio.sleep(1.0)

    def _first_packet(self, ingest: Ingest) -> None:
        if ingest.layer_map is not None:
            self.update_layers_wanted()
        if not self.publishing:
            self.publishing = True
            task = asyncio.ensure_future(self._on_media(self))
            task.add_done_callback(_log_task_failure)

    def codec_names(self) -> dict[str, str]:
        """The codec names negotiated per kind (from received media when known)."""
        names = {}
        for kind, ingest in self.ingests.items():
            codec = ingest.codec
            if codec is None:
                transceiver = next((t for t in self.pc.getTransceivers() if t.kind == kind), None)
                codecs = media_codecs(transceiver) if transceiver else []
                codec = codecs[0] if codecs else None
            names[kind] = codec.mimeType.split("/")[1] if codec else ""
        return names

    def set_mute(self, audio: bool, video: bool) -> None:
        """Muted media is not forwarded."""
        if "audio" in self.ingests:
            self.ingests["audio"].set_enabled(not audio)
        if "video" in self.ingests:
            self.ingests["video"].set_enabled(not video)

    async def close(self) -> None:
        if self._remb is not None:
            self._remb.cancel()
        for task in self._nack_retries:
            task.cancel()
        for ingest in self.ingests.values():
            ingest.close()
        if self.speakers is not None:
            self.speakers.remove(self.stream_id)
        await super().close()


class Playback(PeerSession):
    """A player's peer connection fed by the DownTracks of one publication."""

    def __init__(
        self,
        play_id: str,
        publication: Publication,
        participant_id: int,
        reply_channel: str,
        on_failed: Callable[[str], Awaitable[None]],
        on_playing: Callable[[Playback], Awaitable[None]],
        quality: str = "auto",
        on_quality: Callable[[Playback, str], Awaitable[None]] | None = None,
    ) -> None:
        if quality not in WANTED_QUALITIES:
            raise MediaError(MediaErrorCode.INVALID_FIELD, f"quality must be one of {', '.join(WANTED_QUALITIES)}")
        super().__init__(play_id, participant_id, on_failed)
        self.play_id = play_id
        self.publication = publication
        self.reply_channel = reply_channel
        self.downtracks: list[DownTrack] = []
        self._senders: dict[str, Any] = {}
        self._on_playing = on_playing
        self.playing = False
        self.quality = quality
        """The wanted quality: "low", "medium", "high" or "auto" (the downlink decides)."""
        self.forwarded_quality: str | None = None
        """The quality of the video layer being forwarded ("high" without simulcast); None before video."""
        self._on_quality = on_quality
        self._chooser: LayerChooser | None = None
        self._video: DownTrack | None = None

    @property
    def chooser_quality(self) -> dict[str, str]:
        """The wanted quality per kind that has layers to choose from (for dynacast)."""
        return {"video": self.quality} if self._video is not None else {}

    def rechoose(self) -> None:
        """Choose the video layer again from the layers' measured bitrates (called once a second)."""
        ingest = self.publication.ingests.get("video")
        if self._chooser is not None and self._video is not None and ingest is not None:
            self._chooser.choose(ingest.layer_bitrates())

    def set_quality(self, quality: str) -> None:
        """Change the wanted quality while playing (a layer switch follows at the next keyframe)."""
        if quality not in WANTED_QUALITIES:
            raise MediaError(MediaErrorCode.INVALID_FIELD, f"quality must be one of {', '.join(WANTED_QUALITIES)}")
        self.quality = quality
        if self._chooser is not None and self._video is not None:
            ingest = self.publication.ingests.get("video")
            if ingest is not None:
                self._chooser.set_quality(quality, ingest.layer_bitrates())
        self.publication.update_layers_wanted()

    async def answer(self, offer_sdp: str) -> str:
        """Answer a receive-only offer with the publisher's own codecs."""
        for kind, ingest in self.publication.ingests.items():
            if ingest.codec is None:
                continue
            transceiver = self.pc.addTransceiver(IdleTrack(kind), direction="sendonly")
            share_report_timer(transceiver.sender)
            preferences = [codec_capability(ingest.codec)]
            rtx = rtx_capability(kind, ingest.codec.clockRate) if kind == "video" else None
            if rtx is not None:
                preferences.append(rtx)
            transceiver.setCodecPreferences(preferences)
            self._senders[kind] = transceiver
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:
            raise MediaError(MediaErrorCode.INVALID_SDP, f"the offer was refused: {exc}") from None
        if not any(negotiated_codecs(t) for t in self._senders.values()):
            raise MediaError(MediaErrorCode.INVALID_SDP, "the offer accepts none of the stream's codecs")
        prefer_dtls_server(self.pc, offer_sdp)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self.share_timers()
        self.start_watchdog()
        return advertise(self.pc.localDescription.sdp)

    async def connected(self) -> None:
        if self.downtracks or self.closed:
            return
        for kind, transceiver in self._senders.items():
            ingest = self.publication.ingests.get(kind)
            codecs = negotiated_codecs(transceiver)
            if ingest is None or ingest.codec is None or not codecs or transceiver.direction == "inactive":
                continue
            main = next(c for c in codecs if not is_rtx(c))
            rtx = next((c for c in codecs if is_rtx(c) and c.parameters.get("apt") == main.payloadType), None)
            downtrack = DownTrack(
                kind,
                SenderLink(transceiver.sender, transceiver.sender.transport),
                {ingest.codec.payloadType: main.payloadType},  # type: ignore[dict-item]
                rtx.payloadType if rtx else None,
                self._first_packet,
                ingest.request_keyframe,
                extension_id=negotiated_extensions(transceiver).get(PLAYER_EXTENSIONS[kind], 0),
            )
            if kind == "video":
                self._attach_chooser(downtrack, ingest)
            self.downtracks.append(downtrack)
            ingest.add(downtrack)
        self.publication.update_layers_wanted()

    def _attach_chooser(self, downtrack: DownTrack, ingest: Ingest) -> None:
        """The video's layer choice: wanted quality and downlink feedback set the target, switches are reported."""
        chooser = LayerChooser(self.quality, on_target=downtrack.set_target, prober=downtrack.probe)
        self._chooser, self._video = chooser, downtrack
        downtrack.target = chooser.choose(ingest.layer_bitrates())

        def feedback(fraction_lost: float | None, remb: float | None) -> None:
            bitrates = ingest.layer_bitrates()
            if ingest.layer_count < 2:
                return
            if fraction_lost is not None:
                chooser.on_loss(fraction_lost, downtrack.layer, bitrates, time.monotonic())
            elif remb is not None:
                chooser.on_remb(remb, downtrack.layer, bitrates)

        def switched(layer: int) -> None:
            quality = quality_of(layer, ingest.layer_count)
            if quality == self.forwarded_quality:
                return
            self.forwarded_quality = quality
            if self._on_quality is not None:
                task = asyncio.ensure_future(self._on_quality(self, quality))
                task.add_done_callback(_log_task_failure)

        if settings.MEDIA_BANDWIDTH_ADAPTATION:
            downtrack.on_feedback = feedback
        downtrack.on_layer = switched

    def _first_packet(self) -> None:
        if not self.playing:
            self.playing = True
            task = asyncio.ensure_future(self._on_playing(self))
            task.add_done_callback(_log_task_failure)

    async def close(self) -> None:
        for downtrack in self.downtracks:
            ingest = self.publication.ingests.get(downtrack.kind)
            if ingest is not None:
                ingest.remove(downtrack)
        self.downtracks.clear()
        self._video = None
        self.publication.playbacks.discard(self)
        self.publication.update_layers_wanted()
        await super().close()
