"""Finding 1 of issue 11: a dropped participant can be taken over by anyone who says its login.

Design under test (docs/protocol.md, "Resuming after a drop"): STATE's ``self`` carries a
``resume_secret`` (random, per participant, never shown to others); ``hello``
accepts ``resume_secret``; a connection without it (and not the same token
subject or signed-in user) gets ``login_taken`` until the idle window ends, and
after it a brand-new participant with no role and no history of the old one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rooms.tokens import mint_token
from tests.roomclient import RoomClient

pytestmark = pytest.mark.django_db(transaction=True)


async def hello(username: str, **fields: Any) -> RoomClient:
    """A connection whose hello carries ``fields`` (e.g. resume_secret)."""
    client = await RoomClient.connect()
    reply = await client.request({"type": "hello", "version": 1, "username": username, **fields})
    assert reply["type"] == "established", reply
    return client


async def alice_dropped(room: str) -> tuple[RoomClient, dict[str, Any]]:
    """Bob and alice (the creator: moderator) in ``room``, a private message to alice, then alice's socket drops.

    Returns bob's connection and alice's STATE.
    """
    alice = await RoomClient.open("alice")
    state = await alice.join(room)
    assert state["type"] == "state" and state["self"]["role"] == "moderator", state
    bob = await RoomClient.open("bob")
    assert (await bob.join(room))["type"] == "state"
    assert (await bob.request({"type": "send_message", "text": "for alice only", "to": ["alice"]}))["type"] == "ack"
    await alice.until("message")
    await alice.close()  # the socket drops: no leave
    await bob.until(lambda e: e.get("type") == "participant_updated" and e["participant"]["login"] == "alice")
    return bob, state


async def test_a_stranger_saying_a_dropped_login_gets_login_taken() -> None:
    """Finding 1: after alice drops, mallory's hello+join as "alice" is refused with login_taken (no role,
    no private history, no later private messages); alice's own resume with her secret still works."""
    bob, state = await alice_dropped("takeover")
    mallory = await RoomClient.open("alice")
    refused = await mallory.join("takeover")
    assert refused["type"] == "error" and refused["code"] == "login_taken", refused
    assert (await bob.request({"type": "send_message", "text": "second secret", "to": ["alice"]}))["type"] == "ack"
    await mallory.request({"type": "ping"})
    assert not [e for e in mallory.seen if e.get("type") == "message"], mallory.seen
    await mallory.close()

    secret = state["self"]["resume_secret"]
    back = await hello("alice", resume_secret=secret)
    resumed = await back.join("takeover")
    assert resumed["type"] == "state" and resumed["resumed"] is True, resumed
    assert resumed["self"]["role"] == "moderator"
    assert [m["text"] for m in resumed["history"]] == ["for alice only", "second secret"]
    for client in (back, bob):
        await client.close()


async def test_a_wrong_resume_secret_is_refused() -> None:
    """Finding 1: a guessed resume_secret does not resume alice either (login_taken)."""
    bob, _state = await alice_dropped("guess")
    mallory = await hello("alice", resume_secret="0" * 32)
    refused = await mallory.join("guess")
    assert refused["type"] == "error" and refused["code"] == "login_taken", refused
    for client in (mallory, bob):
        await client.close()


async def test_the_resume_secret_is_never_shown_to_others() -> None:
    """Finding 1: alice's STATE has a random resume_secret; bob's STATE, JOINED and participant events do not."""
    alice = await RoomClient.open("alice")
    state = await alice.join("secret")
    secret = state["self"].get("resume_secret")
    assert isinstance(secret, str) and len(secret) >= 22, state["self"]
    bob = await RoomClient.open("bob")
    bob_state = await bob.join("secret")
    assert secret not in repr(bob_state)
    assert bob_state["self"]["resume_secret"] != secret
    joined = await alice.until("joined")
    assert bob_state["self"]["resume_secret"] not in repr(joined)
    await alice.close()
    updated = await bob.until("participant_updated")
    assert secret not in repr(updated) and "resume_secret" not in repr(updated)
    await bob.close()


async def test_after_the_idle_window_the_login_is_a_new_participant(settings: Any) -> None:
    """Finding 1: once alice's idle window ended, "alice" is a brand-new participant: not moderator,
    no private history of the old one (refused before that)."""
    settings.ROOM_IDLE_TIMEOUT = 1.0
    bob, _state = await alice_dropped("window")
    early = await RoomClient.open("alice")
    assert (await early.join("window")).get("code") == "login_taken"
    await early.close()
    await bob.until(lambda e: e.get("type") == "left" and e["participant"]["login"] == "alice", timeout=10)
    late = await RoomClient.open("alice")
    fresh = await late.join("window")
    assert fresh["type"] == "state" and fresh["resumed"] is False, fresh
    assert fresh["self"]["role"] != "moderator"
    assert fresh["history"] == []
    for client in (late, bob):
        await client.close()


async def test_the_same_token_subject_resumes_without_the_secret() -> None:
    """Finding 1: a dropped participant who joined with a token is resumed by a new token for the same
    subject (the backend vouches for it) even without the secret; a guest saying that login is refused."""
    token = mint_token("tokenroom", "carol", role="moderator")
    carol = await RoomClient.open(token=token)
    assert (await carol.join("tokenroom"))["self"]["role"] == "moderator"
    bob = await RoomClient.open("bob")
    await bob.join("tokenroom")
    await carol.close()
    await bob.until("participant_updated")
    guest = await RoomClient.open("carol")
    assert (await guest.join("tokenroom")).get("code") == "login_taken"
    await guest.close()
    again = await RoomClient.open(token=mint_token("tokenroom", "carol", role="moderator"))
    resumed = await again.join("tokenroom")
    assert resumed["type"] == "state" and resumed["resumed"] is True, resumed
    await asyncio.gather(again.close(), bob.close())
