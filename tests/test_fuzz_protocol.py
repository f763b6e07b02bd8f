"""Fuzzing the signalling protocol with hypothesis: every frame gets a reply, nothing crashes, nobody else notices.

An attacker connection sends random and mutated frames (valid commands with fields replaced by wrong types, huge
values, deep nesting, lone surrogates; unknown types; raw text; binary frames; commands out of order) to the real
consumer through channels' WebsocketCommunicator, while a victim sits in the room the attacker may join.  Each
frame must get exactly one reply echoing its request id (an error, pong, ack or state), or, for a refused hello,
a FAILED reply and a close with code 4001.  No ERROR is logged by rooms or media_relay, and the victim only ever
sees legitimate events about the attacker.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from conference.asgi import application
from rooms import protocol as p
from rooms.models import Participant, Room
from rooms.protocol import CommandType as C
from rooms.protocol import EventType as E

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10.0
ROOM = "fuzz"
VICTIM = "victim"
HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
FAKE_SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
REPLY_TYPES = {E.ERROR, E.PONG, E.ACK, E.STATE, E.ESTABLISHED, E.FAILED, E.ANSWER}
#: Events a participant may see because of what another one did (each names that other participant).
ROOM_EVENTS = {
    E.JOINED, E.LEFT, E.PARTICIPANT_UPDATED, E.MESSAGE, E.PUBLISHED, E.UNPUBLISHED, E.STREAM_UPDATED,
}
#: Events the attacker may get about its own media, without a request id.
OWN_EVENTS = ROOM_EVENTS | {E.STREAM_STATUS, E.PLAY_STATUS, E.ROOM_UPDATED, E.ROOM_CLOSED}


# --- strategies -------------------------------------------------------------------------------------

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
nasty_text = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), surrogates, st.text(max_size=5)),
    st.sampled_from(["", " ", "\x00", "a" * 5000, "\u202e", "💥" * 50, "null", "victim", ROOM]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**53, -(2**63), 10**100, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def templates(login: str) -> list[dict[str, Any]]:
    """One valid instance of every command."""
    return [
        {"type": "hello", "version": 1, "username": login},
        {"type": "ping"},
        {"type": "join", "room": ROOM},
        {"type": "leave"},
        {"type": "send_message", "text": "hi"},
        {"type": "send_message", "text": "psst", "to": [VICTIM]},
        {"type": "publish", "kind": "camera", "sdp": FAKE_SDP},
        {"type": "unpublish", "stream": "0" * 32},
        {"type": "play", "stream": "0" * 32, "sdp": FAKE_SDP},
        {"type": "stop", "play": "0" * 32},
        {"type": "ice", "pc": "0" * 32, "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                                                       "sdpMid": "0", "sdpMLineIndex": 0}},
        {"type": "mute", "stream": "0" * 32, "audio": True},
        {"type": "moderate", "action": "kick", "login": VICTIM},
        {"type": "moderate", "action": "finalize"},
    ]


@st.composite
def mutated(draw: st.DrawFn, login: str) -> dict[str, Any]:
    """A valid command with some fields replaced, removed or added."""
    frame = dict(draw(st.sampled_from(templates(login))))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["replace", "delete", "add", "retype", "impersonate"]))
        keys = sorted(frame)
        if action == "replace":
            frame[draw(st.sampled_from(keys))] = draw(json_values)
        elif action == "delete":
            frame.pop(draw(st.sampled_from(keys)), None)
        elif action == "add":
            frame[draw(st.text(max_size=10))] = draw(json_values)
        elif action == "retype":
            frame["type"] = draw(st.one_of(nasty_text, st.sampled_from(sorted(p.COMMANDS)), json_values))
        else:  # payload fields naming someone else: must be ignored
            frame[draw(st.sampled_from(["from", "login", "participant", "sender", "room_id", "channel"]))] = VICTIM
    return frame


def _nested(depth: int) -> str:
    return '{"type": "send_message", "text": ' + "[" * depth + "]" * depth + "}"


raw_frames = st.one_of(
    st.text(max_size=200).map(lambda t: ("text", t)),
    st.binary(max_size=200).map(lambda b: ("bytes", b or b"\x00")),
    st.sampled_from([b"\xff\xfe\xfd", b'{"type": "ping"}', b"\xc3\x28", b"\xed\xa0\x80"]).map(lambda b: ("bytes", b)),
    st.sampled_from([
        '{"type": "join", "room": "\\ud800"}', '{"type": "send_message", "text": "\\udfff x"}',
        '{"type": "hello", "version": 1, "username": "\\ud83d"}', '{"type": "ping", "rid": "\\udc00"}',
        "[" * 100_000, '{"a": ' * 50_000, "{", "null", '"ping"', "1e999999", '{"type": "ping"} trailing',
        '{"type": "ping", "type": "leave"}',
    ]).map(lambda t: ("text", t)),
    st.integers(10, 3000).map(lambda d: ("text", _nested(d))),
)


def frames(login: str) -> st.SearchStrategy[tuple[str, Any]]:
    """One frame: a mutated command, a valid one, or raw bytes/text."""
    return st.one_of(
        mutated(login).map(lambda f: ("json", f)),
        st.sampled_from(templates(login)).map(lambda f: ("json", dict(f))),
        raw_frames,
    )


# --- harness ------------------------------------------------------------------------------------------


#: What the fuzzer provoked (asserted at the end, so a broken generator cannot pass silently).
REPLIES: dict[str, int] = {}
CODES: dict[str, int] = {}


class ErrorLog(logging.Handler):
    """Collects ERROR records of the server's loggers."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    """ERROR records of rooms.* and media_relay.* during the test."""
    handler = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("rooms", "media_relay")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


class Peer:
    """A communicator with JSON helpers and a log of what it saw."""

    def __init__(self) -> None:
        self.comm = WebsocketCommunicator(application, "/ws/", headers=HEADERS)
        self.closed_with: int | None = None

    async def open(self) -> None:
        """Connect."""
        connected, _ = await self.comm.connect(timeout=WAIT)
        assert connected

    async def next(self) -> dict[str, Any] | None:
        """The next frame as JSON, or None when the server closed (the code kept in ``closed_with``)."""
        output = await self.comm.receive_output(timeout=WAIT)
        if output["type"] == "websocket.close":
            self.closed_with = output.get("code", 1000)
            return None
        assert output["type"] == "websocket.send" and output.get("text") is not None, output
        return json.loads(output["text"])

    async def reply(self, rid: Any, seen: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The reply carrying ``rid`` (None for a close); other frames go to ``seen``."""
        while True:
            frame = await self.next()
            if frame is None:
                return None
            if frame.get("type") in REPLY_TYPES and frame.get("rid") == rid:
                return frame
            seen.append(frame)


def about(event: dict[str, Any]) -> set[str]:
    """The logins an event is about."""
    logins = set()
    if isinstance(event.get("participant"), dict):
        logins.add(event["participant"].get("login"))
    if isinstance(event.get("message"), dict):
        logins.add(event["message"].get("from"))
    if isinstance(event.get("stream"), dict):
        logins.add(event["stream"].get("owner"))
    return logins


def check_bystander(events: list[dict[str, Any]]) -> None:
    """Only room events about someone else; none about the victim, no errors, no room closing."""
    for event in events:
        assert event.get("type") in ROOM_EVENTS, event
        assert "rid" not in event, event
        logins = about(event)
        assert logins and VICTIM not in logins, event


async def attack(victim: Peer, login: str, plan: list[tuple[str, Any]]) -> None:
    """Send ``plan`` from a fresh connection; check every reply; leave; check the victim."""
    attacker = Peer()
    await attacker.open()
    seen: list[dict[str, Any]] = []
    joined = False
    rids = itertools.count()
    for kind, body in plan:
        if kind == "json":
            if "rid" not in body:
                body = {**body, "rid": f"r{next(rids)}"}
            text = json.dumps(body, ensure_ascii=True)
            await attacker.comm.send_to(text_data=text)
            decoded = json.loads(text)
            expected = p.request_id(decoded)
            is_hello = decoded.get("type") == C.HELLO
        elif kind == "text":
            await attacker.comm.send_to(text_data=body or " ")
            try:
                decoded = json.loads(body or " ")
            except (ValueError, RecursionError):
                decoded = None
            expected = p.request_id(decoded) if isinstance(decoded, dict) else None
            is_hello = isinstance(decoded, dict) and decoded.get("type") == C.HELLO
        else:
            await attacker.comm.send_to(bytes_data=body)
            expected, is_hello = None, False
        reply = await attacker.reply(expected, seen)
        REPLIES[reply["type"] if reply else "closed"] = REPLIES.get(reply["type"] if reply else "closed", 0) + 1
        if reply and reply["type"] == E.ERROR:
            CODES[reply["code"]] = CODES.get(reply["code"], 0) + 1
        assert reply is not None, f"closed with {attacker.closed_with} without a reply to {kind} {body!r:.200}"
        if reply["type"] == E.ERROR:
            assert isinstance(reply["code"], str) and reply["code"] and reply["message"], reply
            assert reply["code"] != p.ErrorCode.INTERNAL_ERROR, (body, reply)
        elif reply["type"] == E.FAILED:
            assert is_hello, reply
            assert await attacker.next() is None and attacker.closed_with == 4001
            break
        elif reply["type"] == E.STATE:
            joined = True
            assert reply["room"]["name"] != ROOM or reply["self"]["login"] != VICTIM, reply
        elif reply["type"] == E.ACK and kind == "json" and decoded.get("type") == C.LEAVE:
            joined = False
    for event in seen:
        assert event.get("type") in OWN_EVENTS, event
    if attacker.closed_with is None:
        if joined:
            await attacker.comm.send_to(text_data=json.dumps({"type": "leave", "rid": "bye"}))
            await attacker.reply("bye", [])
        await attacker.comm.disconnect()
    await victim.comm.send_to(text_data=json.dumps({"type": "ping", "rid": "still-there"}))
    events: list[dict[str, Any]] = []
    assert await victim.reply("still-there", events) == {"type": "pong", "rid": "still-there"}
    check_bystander(events)


@database_sync_to_async
def victim_state() -> tuple[str, str, bool]:
    """The victim's state and role, and whether its room is still active."""
    participant = Participant.objects.select_related("room").get(login=VICTIM, room__name=ROOM)
    return participant.state, participant.role, participant.room.finalized_at is None


@pytest.mark.timeout(300)
async def test_fuzzed_frames_get_replies_and_leave_others_alone(settings: Any, error_log: ErrorLog) -> None:
    """~150 generated sessions of up to 8 frames: a reply to each, no ERROR logged, the victim unaffected."""
    settings.WS_RATE_COMMANDS_PER_SECOND = 0.0  # the fuzzer sends faster than any person
    settings.WS_RATE_MESSAGES_PER_SECOND = 0.0
    loop = asyncio.get_running_loop()
    victim = Peer()
    await victim.open()
    await victim.comm.send_to(text_data=json.dumps({"type": "hello", "version": 1, "username": VICTIM, "rid": 1}))
    assert (await victim.reply(1, []) or {}).get("type") == E.ESTABLISHED
    await victim.comm.send_to(text_data=json.dumps({"type": "join", "room": ROOM, "max_participants": 1000, "rid": 2}))
    assert (await victim.reply(2, []) or {}).get("type") == E.STATE
    counter = itertools.count()

    @hypothesis_settings(
        max_examples=150, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(data=st.data())
    def session(data: st.DataObject) -> None:
        login = f"fz{next(counter)}"
        start = data.draw(st.sampled_from(["fresh", "hello", "joined", "publishing"]), label="start")
        plan: list[tuple[str, Any]] = []
        if start != "fresh":
            plan.append(("json", {"type": "hello", "version": 1, "username": login}))
        if start in ("joined", "publishing"):
            plan.append(("json", {"type": "join", "room": ROOM}))
        if start == "publishing":  # through the media relay, which refuses this offer
            plan.append(("json", {"type": "publish", "kind": "camera", "sdp": FAKE_SDP}))
        plan += data.draw(st.lists(frames(login), min_size=1, max_size=8), label="frames")
        asyncio.run_coroutine_threadsafe(attack(victim, login, plan), loop).result(timeout=120)

    await asyncio.wait_for(asyncio.to_thread(session), timeout=240)
    assert await victim_state() == ("connected", "moderator", True)
    assert next(counter) >= 100, "hypothesis ran too few examples"
    assert {E.ERROR, E.PONG, E.ACK, E.STATE, E.ESTABLISHED, E.FAILED} <= set(REPLIES), REPLIES
    assert len(CODES) >= 10, CODES
    logging.getLogger(__name__).info("fuzz replies %s; error codes %s", REPLIES, CODES)
    assert not error_log.records, [r.getMessage() for r in error_log.records][:5]
    assert await database_sync_to_async(Room.objects.filter(name=ROOM, finalized_at__isnull=True).count)() == 1
    await victim.comm.disconnect()
