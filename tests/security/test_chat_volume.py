"""Finding 7 of issue 11 (and the last small item of 9): chat amplification and oversized messages.

Design under test: STATE history bounded in bytes as well as count
(ROOM_HISTORY_MAX_BYTES), older messages fetched page by page with
``{"type": "history", "before": <message id>, "limit": n}`` answered by
``history`` with ``messages`` (oldest first) and ``more``; a per-connection
byte budget (WS_RATE_MESSAGE_BYTES_PER_SECOND / _BURST, refused with
``rate_limited``); MESSAGE_RETENTION_DAYS and ``manage.py cleanup``; the SDKs
check the announced size limit before sending and raise ``message_too_large``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.utils import timezone

import roomapi
from roomapi import RoomApiError
from rooms.models import Message, Room
from tests.roomclient import RoomClient
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

BIG = 100 * 1024


@database_sync_to_async
def fill(room_name: str, count: int, size: int) -> list[int]:
    """``count`` messages of ``size`` bytes to everyone in the active room, oldest first; their ids."""
    room = Room.objects.get(name=room_name, finalized_at__isnull=True)
    messages = Message.objects.bulk_create(
        Message(room=room, sender_login="flood", text=f"{n:04d}" + "x" * (size - 4)) for n in range(count)
    )
    return [m.pk for m in messages]


async def test_state_history_is_bounded_in_bytes() -> None:
    """Finding 7: a room holding 50 messages of 100 KiB: a joiner's STATE carries the newest of them within a
    byte bound (not 5 MiB), and says there are more."""
    alice = await RoomClient.open("alice")
    await alice.join("flooded")
    ids = await fill("flooded", 50, BIG)
    bob = await RoomClient.open("bob")
    state = await bob.join("flooded")
    history = state["history"]
    assert len(json.dumps(state)) < 1024 * 1024, "STATE is not bounded in bytes"
    assert history and [m["id"] for m in history] == ids[-len(history):]
    assert state.get("history_more") is True
    for client in (alice, bob):
        await client.close()


async def test_older_messages_come_page_by_page() -> None:
    """Finding 7: `history` pages back from the oldest message of STATE: each page at most `limit` messages,
    oldest first, `more` false on the last; together with STATE every message exactly once."""
    alice = await RoomClient.open("alice")
    await alice.join("paged")
    ids = await fill("paged", 60, 10)
    bob = await RoomClient.open("bob")
    state = await bob.join("paged")
    seen = [m["id"] for m in state["history"]]
    more = True
    while more:
        page = await bob.request({"type": "history", "before": seen[0], "limit": 7})
        assert page["type"] == "history", page
        assert 0 < len(page["messages"]) <= 7 or not page["more"]
        seen = [m["id"] for m in page["messages"]] + seen
        more = page["more"]
    assert seen == ids
    huge = await bob.request({"type": "history", "before": ids[-1], "limit": 100_000})  # refused or clamped
    assert (huge["type"] == "error" and huge["code"] == "invalid_field") or len(huge["messages"]) <= 100, huge
    for client in (alice, bob):
        await client.close()


async def test_a_connection_has_a_byte_budget(settings: Any) -> None:
    """Finding 7: over WS_RATE_MESSAGE_BYTES_* a message is refused with rate_limited (not stored); small
    messages still pass while the budget refills."""
    settings.WS_RATE_MESSAGE_BYTES_PER_SECOND = 10_000
    settings.WS_RATE_MESSAGE_BYTES_BURST = 150_000
    alice = await RoomClient.open("alice")
    await alice.join("budget")
    assert (await alice.request({"type": "send_message", "text": "y" * BIG}))["type"] == "ack"
    refused = await alice.request({"type": "send_message", "text": "y" * BIG})
    assert refused["type"] == "error" and refused["code"] == "rate_limited", refused
    assert (await alice.request({"type": "send_message", "text": "small"}))["type"] == "ack"
    assert await database_sync_to_async(Message.objects.count)() == 2
    await alice.close()


def test_expired_messages_are_deleted(settings: Any) -> None:
    """Finding 7: `manage.py cleanup` deletes messages older than MESSAGE_RETENTION_DAYS, keeps younger ones."""
    settings.MESSAGE_RETENTION_DAYS = 30
    room = Room.objects.create(name="old", max_participants=10)
    old, _young = (Message.objects.create(room=room, sender_login="x", text=t) for t in ("old", "young"))
    Message.objects.filter(pk=old.pk).update(sent_at=timezone.now() - timedelta(days=31))
    call_command("cleanup")
    assert list(Message.objects.values_list("text", flat=True)) == ["young"]


@pytest.fixture
def server(transactional_db: Any) -> Iterator[DaphneServer]:
    """A real daphne (with the Makefile's 2 MiB frame limit)."""
    with DaphneServer() as running:
        yield running


async def test_an_oversized_message_is_refused_locally_and_the_user_stays(server: DaphneServer) -> None:
    """Finding 9: the SDK refuses a 3 MiB message with message_too_large before sending it (daphne would drop
    the connection); the user stays in the room and can go on chatting."""
    ann = await roomapi.connect(server.ws_url, "ann")
    room = await ann.join("big")
    with pytest.raises(RoomApiError) as refused:
        await room.send_message("z" * (3 * 1024 * 1024))
    assert refused.value.code == "message_too_large", refused.value
    await ann.ping()
    assert (await room.send_message("still here")).text == "still here"
    await ann.disconnect()
