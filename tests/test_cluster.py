"""Two real daphne processes sharing Redis and the database serve one room."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import roomapi
from roomapi import ROOM_EVENT
from tests.conftest import require_redis
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0


@pytest.fixture
def cluster(transactional_db: Any) -> Iterator[tuple[DaphneServer, DaphneServer]]:
    """Two daphne processes on the test database and this run's REDIS_URL."""
    require_redis()
    env = {"ROOM_IDLE_TIMEOUT": "1"}
    with DaphneServer(env) as first, DaphneServer(env) as second:
        yield first, second


async def test_two_processes_serve_one_room(cluster: tuple[DaphneServer, DaphneServer]) -> None:
    """Clients on different processes see each other's joined, messages, drop/resume and left."""
    first, second = cluster
    assert first.port != second.port
    alice = await roomapi.connect(first.ws_url, "alice")
    bob = await roomapi.connect(second.ws_url, "bob")
    carol = await roomapi.connect(second.ws_url, "carol")
    room_a = await alice.join("cluster")
    room_b = await bob.join("cluster")
    assert [p.login for p in room_b.get_participants()] == ["alice"]
    joined = await room_a.wait_for(ROOM_EVENT.JOINED, timeout=WAIT)
    assert joined.participant is not None and joined.participant.login == "bob"

    sent = await room_b.send_message("from the second process ✓")
    got = await room_a.wait_for(ROOM_EVENT.MESSAGE, timeout=WAIT)
    assert got.message == sent
    reply = await room_a.send_message("back from the first", to=["bob"])
    got = await room_b.wait_for(ROOM_EVENT.MESSAGE, lambda e: e.message is not None and e.message.sender == "alice",
                                timeout=WAIT)
    assert got.message == reply

    room_c = await carol.join("cluster")
    assert sorted(p.login for p in room_c.get_participants()) == ["alice", "bob"]
    assert "back from the first" not in [m.text for m in room_c.history]
    await room_a.wait_for(ROOM_EVENT.JOINED, lambda e: e.participant is not None and e.participant.login == "carol",
                          timeout=WAIT)

    await room_b.leave()
    left = await room_a.wait_for(ROOM_EVENT.LEFT, timeout=WAIT)
    assert left.participant is not None and left.participant.login == "bob"

    # alice drops on the first process; carol on the second is told, and alice expires there too
    await alice.disconnect()
    dropped = await room_c.wait_for(ROOM_EVENT.PARTICIPANT_UPDATED, lambda e: e.participant is not None, timeout=WAIT)
    assert dropped.participant is not None and dropped.participant.login == "alice"
    assert dropped.data["participant"]["state"] == "disconnected"
    expired = await room_c.wait_for(
        ROOM_EVENT.LEFT, lambda e: e.participant is not None and e.participant.login == "alice", timeout=WAIT
    )
    assert expired.participant is not None and expired.participant.login == "alice"
    await bob.disconnect()
    await carol.disconnect()


async def test_resume_on_the_other_process(cluster: tuple[DaphneServer, DaphneServer]) -> None:
    """A login that dropped on one process resumes on the other within ROOM_IDLE_TIMEOUT (with its resume secret)."""
    first, second = cluster
    alice = await roomapi.connect(first.ws_url, "alice")
    room_a = await alice.join("move")
    bob = await roomapi.connect(first.ws_url, "bob")
    secret = (await bob.join("move")).resume_secret
    await bob.disconnect()
    await room_a.wait_for(ROOM_EVENT.PARTICIPANT_UPDATED, timeout=WAIT)
    bob = await roomapi.connect(second.ws_url, "bob", resume_secret=secret)
    room_b = await bob.join("move")
    assert room_b.resumed
    back = await room_a.wait_for(ROOM_EVENT.PARTICIPANT_UPDATED, timeout=WAIT)
    assert back.participant is not None and back.data["participant"]["state"] == "connected"
    await room_b.send_message("moved")
    assert (await room_a.wait_for(ROOM_EVENT.MESSAGE, timeout=WAIT)).message is not None
    await alice.disconnect()
    await bob.disconnect()
