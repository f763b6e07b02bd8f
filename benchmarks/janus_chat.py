"""One participant of the three-way chat through Janus's VideoRoom, as a process (benchmarks/loss.py).

The Janus counterpart of tests/network/chat.py: it joins a VideoRoom as a publisher, publishes the same 30 fps
counter video (aiortc's VP8 encoder) and tone (Opus), subscribes to the two others, decodes everything with
the Python SDK's receivers (roomapi/recovery.py on aiortc: the same clients as ours get; ``--no-recovery``:
plain aiortc), and prints the same JSON line of figures (tests.network.chat.measure) once
``--seconds`` of media have been measured; then it keeps publishing until its standard input closes.

    python -m benchmarks.janus_chat --url http://127.0.0.1:PORT/janus --room 4321 --name ann --others bob,cat
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from dataclasses import asdict
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from benchmarks.janus import JanusServer
from roomapi import recovery
from tests.media_sources import CounterVideoTrack, ToneAudioTrack
from tests.network.chat import Watch, consume_audio, consume_video, measure, watch_loop

logger = logging.getLogger(__name__)

WAIT = 30.0


class JanusClient(JanusServer):
    """The HTTP API client half of benchmarks.janus.JanusServer, for a Janus started elsewhere."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url

    @property
    def url(self) -> str:
        return self._url

    async def create_room(self, room: int, bitrate: int) -> None:
        """Create ``room`` (VP8 + Opus) unless it exists (every participant tries; the first one wins)."""
        handle = await self._attach()
        body = {"request": "create", "room": room, "publishers": 6, "bitrate": bitrate, "fir_freq": 10,
                "videocodec": "vp8", "audiocodec": "opus", "permanent": False}
        reply = await self._post(f"/{self.session}/{handle}", {"janus": "message", "body": body})
        data = reply.get("plugindata", {}).get("data", {})
        if data.get("videoroom") != "created" and data.get("error_code") != 427:  # 427: the room exists
            raise RuntimeError(f"janus refused to create room {room}: {reply}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Join, publish, subscribe to the others, measure; the report."""
    janus = JanusClient(args.url)
    await janus.create_room(args.room, args.bitrate)
    handle = await janus._attach()
    await janus._message(handle, {"request": "join", "ptype": "publisher", "room": args.room, "display": args.name})
    joined = await janus._event(handle, "joined")
    feeds: dict[str, int] = {}

    def note(data: dict[str, Any]) -> None:
        for publisher in data.get("publishers", []) or []:
            feeds[str(publisher.get("display"))] = int(publisher["id"])

    note(joined["plugindata"]["data"])
    color = tuple(int(v) for v in args.color.split(","))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(CounterVideoTrack(color), direction="sendonly")  # type: ignore[arg-type]
    pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = {"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False}
    await janus._message(handle, {"request": "publish", "audio": True, "video": True}, offer)
    while True:
        event = await janus._event(handle, "event")
        data = event["plugindata"]["data"]
        note(data)
        if "jsep" in event:
            await pc.setRemoteDescription(RTCSessionDescription(event["jsep"]["sdp"], "answer"))
            break
    others = [login for login in args.others.split(",") if login]
    deadline = time.monotonic() + WAIT
    while any(login not in feeds for login in others):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{args.name}: {others} never all published (seen {sorted(feeds)})")
        try:
            event = await asyncio.wait_for(janus.handles[handle].get(), 1.0)
            note(event.get("plugindata", {}).get("data", {}))
        except TimeoutError:
            pass
    started = time.monotonic()
    until = started + args.seconds
    watches = [Watch(login) for login in others]
    tasks: list[Any] = []
    subscribers: list[RTCPeerConnection] = []
    retries: list[asyncio.Task[None]] = []
    recover = not args.no_recovery
    for login, watch in zip(others, watches, strict=True):
        sub = await janus._attach()
        await janus._message(sub, {"request": "join", "ptype": "subscriber", "room": args.room,
                                   "streams": [{"feed": feeds[login]}]})
        attached = await janus._event(sub, "attached")
        player = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        subscribers.append(player)
        tracks: dict[str, Any] = {}
        player.on("track", lambda track, tracks=tracks: tracks.__setitem__(track.kind, track))
        await player.setRemoteDescription(RTCSessionDescription(attached["jsep"]["sdp"], "offer"))
        await player.setLocalDescription(await player.createAnswer())
        if recover:
            for transceiver in player.getTransceivers():
                task = recovery.install(transceiver.receiver)
                if task is not None:
                    retries.append(task)
        answer = {"type": "answer", "sdp": player.localDescription.sdp, "trickle": False}
        await janus._message(sub, {"request": "start"}, answer)
        await janus._event(sub, "started")
        if "video" in tracks:
            tasks.append(consume_video(tracks["video"], watch, until))
        if "audio" in tracks:
            tasks.append(consume_audio(tracks["audio"], watch, until))
    stalls: list[tuple[float, float]] = []
    await asyncio.gather(watch_loop(stalls, until), *tasks)
    low = started + args.warmup
    report: dict[str, Any] = {
        "name": args.name,
        "played": {},
        "max_stall_ms": round(max((late for when, late in stalls if when >= low), default=0.0) * 1000, 1),
    }
    for watch in watches:
        watch.status = "playing"
        measure(watch, started, (low, until))
        data = asdict(watch)
        data.pop("times")
        report["played"][watch.publisher] = data
    print(json.dumps(report), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in retries:
        task.cancel()
    await asyncio.gather(*(p.close() for p in [pc, *subscribers]), return_exceptions=True)
    await janus.teardown()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Janus's HTTP API, http://HOST:PORT/janus")
    parser.add_argument("--room", type=int, default=4321)
    parser.add_argument("--name", required=True)
    parser.add_argument("--others", required=True, help="comma-separated displays to play")
    parser.add_argument("--color", default="200,40,40")
    parser.add_argument("--codec", default="VP8", help="VP8 only (the room's codec)")
    parser.add_argument("--bitrate", type=int, default=600_000, help="the room's publisher bitrate cap")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--no-recovery", action="store_true",
                        help="plain aiortc receivers (default: the Python SDK's, roomapi/recovery.py, as ours get)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
