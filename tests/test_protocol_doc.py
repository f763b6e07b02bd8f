"""docs/protocol.md matches the code: every client example is sent, in order, to the real consumer."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rooms import protocol as p
from rooms.protocol import EventType as E
from tests.test_consumers import Client

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
BLOCK = re.compile(r"^```json (client|server)([^\n]*)\n(.*?)\n```$", re.MULTILINE | re.DOTALL)
EVENT_TYPES = set(E)
# Errors that would mean a media example is malformed, rather than merely lacking a live peer connection.
INPUT_ERRORS = {
    p.ErrorCode.BAD_JSON, p.ErrorCode.BAD_FRAME, p.ErrorCode.FRAME_TOO_LARGE, p.ErrorCode.UNKNOWN_TYPE,
    p.ErrorCode.MISSING_FIELD, p.ErrorCode.INVALID_FIELD, p.ErrorCode.NOT_ESTABLISHED, p.ErrorCode.NOT_JOINED,
}


@dataclass
class Example:
    """One fenced JSON example of the document."""

    side: str
    who: str
    expect: str
    media: bool
    body: dict[str, Any]
    line: int


def examples() -> list[Example]:
    """Every ```json client/server block, in document order."""
    text = DOC.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        side, info, body = match.group(1), match.group(2).split(), match.group(3)
        line = text.count("\n", 0, match.start()) + 1
        data = json.loads(body)
        assert isinstance(data, dict) and isinstance(data.get("type"), str), f"line {line}: not an object with a type"
        who = info[0] if side == "client" and info else ""
        expect = next((x.split("=", 1)[1] for x in info if x.startswith("expect=")), "")
        found.append(Example(side, who, expect, "media" in info, data, line))
    return found


def shape(value: Any) -> Any:
    """The structure of a JSON value: dict keys recursively, a list by its first item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def same_shape(documented: Any, real: Any) -> bool:
    """True if the two shapes agree (an empty list matches any list)."""
    if isinstance(documented, dict) and isinstance(real, dict):
        return documented.keys() == real.keys() and all(same_shape(documented[k], real[k]) for k in documented)
    if isinstance(documented, list) and isinstance(real, list):
        return not documented or not real or same_shape(documented[0], real[0])
    return documented == real


def test_document_covers_every_command_event_and_error_code() -> None:
    """Each command has a client example, each event a server example, each error code a row in the table."""
    found = examples()
    assert {e.body["type"] for e in found if e.side == "client"} == set(p.COMMANDS)
    assert {e.body["type"] for e in found if e.side == "server"} == EVENT_TYPES
    text = DOC.read_text(encoding="utf-8")
    codes = {v for k, v in vars(p.ErrorCode).items() if k.isupper()}
    missing = [code for code in codes if f"| `{code}` |" not in text]
    assert not missing, f"error codes missing from the table: {missing}"
    for status in (*p.SessionStatus, *p.StreamStatus, *p.PlayStatus, "4001"):
        assert status in text


def test_every_client_example_parses() -> None:
    """Every client example is a valid command (media ones included) and states its expected reply."""
    for example in examples():
        if example.side != "client":
            continue
        assert example.who and example.expect, f"line {example.line}: say who sends it and expect=<reply>"
        command = p.parse_command(example.body)
        assert command.type == example.body["type"]


@pytest.mark.django_db(transaction=True)
async def test_examples_against_the_consumer() -> None:
    """Send every client example in document order; the reply has the type the document states.

    Media examples need a real peer connection to succeed, so for them only input-class errors fail the test.
    Every server example must then have the structure of a real event of its type seen during the run.
    """
    clients: dict[str, Client] = {}
    seen: dict[str, list[dict[str, Any]]] = {}
    closed: set[str] = set()
    try:
        for example in examples():
            if example.side != "client":
                continue
            if example.who not in clients:
                clients[example.who] = await Client().open()
            c = clients[example.who]
            await c.send(example.body)
            reply = await c.reply(example.body.get("rid"))
            for frame in [*c.events, reply]:
                seen.setdefault(frame["type"], []).append(frame)
            c.events.clear()
            where = f"line {example.line}: {example.body['type']} -> {reply}"
            if example.media:
                assert not (reply["type"] == E.ERROR and reply["code"] in INPUT_ERRORS), where
                continue
            if example.expect.startswith("error:"):
                assert reply["type"] == E.ERROR and reply["code"] == example.expect.split(":", 1)[1], where
            else:
                assert reply["type"] == example.expect, where
            if reply["type"] == E.FAILED:  # the server closes with 4001; let the consumer finish as daphne would
                assert await c.comm.receive_output(timeout=10) == {"type": "websocket.close", "code": 4001}
                await c.close()
                closed.add(example.who)
        for who, c in clients.items():  # collect what is still on its way (kicked, room_closed, ...)
            if who in closed:
                continue
            while not await c.comm.receive_nothing(timeout=1.0):
                frame = await c.receive()
                seen.setdefault(frame["type"], []).append(frame)
    finally:
        for who, c in clients.items():
            if who not in closed:
                await c.close()

    for example in examples():
        if example.side != "server" or example.body["type"] not in seen:
            continue
        documented = shape({k: v for k, v in example.body.items() if k != "rid"})
        real = [shape({k: v for k, v in frame.items() if k != "rid"}) for frame in seen[example.body["type"]]]
        assert any(same_shape(documented, r) for r in real), (
            f"line {example.line}: the documented {example.body['type']} does not match the server's: {real[0]}"
        )
    for kind in (E.STATE, E.JOINED, E.LEFT, E.MESSAGE, E.ACK, E.ERROR, E.ROOM_UPDATED, E.KICKED, E.ROOM_CLOSED):
        assert kind in seen, f"the run produced no {kind} to check the document against"
