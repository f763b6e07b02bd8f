"""Smoke: a client says hello, joins and gets STATE."""

import json

import pytest
from channels.testing import WebsocketCommunicator

from conference.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def test_hello_join_state() -> None:
    """hello -> established, join -> state."""
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    comm = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _ = await comm.connect()
    assert connected
    await comm.send_to(text_data=json.dumps({"type": "hello", "version": 1, "username": "alice", "rid": 1}))
    reply = json.loads(await comm.receive_from(timeout=5))
    assert reply["type"] == "established" and reply["rid"] == 1
    await comm.send_to(text_data=json.dumps({"type": "join", "room": "r1", "rid": 2}))
    state = json.loads(await comm.receive_from(timeout=5))
    assert state["type"] == "state" and state["room"]["name"] == "r1"
    await comm.disconnect()
