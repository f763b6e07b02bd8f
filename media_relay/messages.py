"""Channel-layer messages between signalling (consumers) and media workers.

Requests go to a worker's channel; replies go to the requesting consumer's
channel as ``media.reply`` carrying a protocol event ready to send.
"""

from __future__ import annotations

from typing import Any

PUBLISH = "media.publish"
PLAY = "media.play"
STOP = "media.stop"
ICE = "media.ice"
MUTE = "media.mute"
PARTICIPANT_GONE = "media.participant_gone"
STREAMS_CLOSED = "media.streams_closed"
REPLY = "media.reply"


def publish(
    room_id: int, participant_id: int, stream_id: str, sdp: str, record: bool, reply_channel: str, rid: Any
) -> dict[str, Any]:
    return {
        "type": PUBLISH,
        "room_id": room_id,
        "participant_id": participant_id,
        "stream_id": stream_id,
        "sdp": sdp,
        "record": record,
        "reply_channel": reply_channel,
        "rid": rid,
    }


def play(
    room_id: int, participant_id: int, stream_id: str, play_id: str, sdp: str, reply_channel: str, rid: Any
) -> dict[str, Any]:
    return {
        "type": PLAY,
        "room_id": room_id,
        "participant_id": participant_id,
        "stream_id": stream_id,
        "play_id": play_id,
        "sdp": sdp,
        "reply_channel": reply_channel,
        "rid": rid,
    }


def stop(room_id: int, play_id: str, reply_channel: str, rid: Any) -> dict[str, Any]:
    return {"type": STOP, "room_id": room_id, "play_id": play_id, "reply_channel": reply_channel, "rid": rid}


def ice(
    room_id: int,
    participant_id: int,
    pc_id: str,
    candidate: str | None,
    sdp_mid: str | None,
    sdp_mline_index: int | None,
    reply_channel: str,
    rid: Any,
) -> dict[str, Any]:
    return {
        "type": ICE,
        "room_id": room_id,
        "participant_id": participant_id,
        "pc_id": pc_id,
        "candidate": candidate,
        "sdp_mid": sdp_mid,
        "sdp_mline_index": sdp_mline_index,
        "reply_channel": reply_channel,
        "rid": rid,
    }


def mute(room_id: int, stream_id: str, audio: bool, video: bool) -> dict[str, Any]:
    return {"type": MUTE, "room_id": room_id, "stream_id": stream_id, "audio": audio, "video": video}


def participant_gone(room_id: int, participant_id: int) -> dict[str, Any]:
    return {"type": PARTICIPANT_GONE, "room_id": room_id, "participant_id": participant_id}


def streams_closed(stream_ids: list[str], room_ids: list[int]) -> dict[str, Any]:
    return {"type": STREAMS_CLOSED, "stream_ids": stream_ids, "room_ids": room_ids}


def reply(event: dict[str, Any]) -> dict[str, Any]:
    """A protocol event for the consumer to pass on to its client."""
    return {"type": REPLY, "event": event}
