"""The permission matrix: every role against every command, allowed or refused with ``forbidden`` and no change."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from rooms import protocol as p
from rooms.auth import authenticate_hello
from rooms.exceptions import RoomError
from rooms.models import Message, Participant, Room, Stream, UserRole
from rooms.permissions import GRANTS, ROLE_GRANTS, require_grant
from rooms.tokens import mint_token
from tests.roomclient import RoomClient, add_live_stream

ROOM = "matrix"
STREAM = "{stream}"


def commands() -> dict[str, tuple[dict[str, Any], frozenset[str]]]:
    """Every command a joined participant can send, with the grants it needs."""
    moderate = frozenset({"can_moderate"})
    return {
        "ping": ({"type": "ping"}, frozenset()),
        "leave": ({"type": "leave"}, frozenset()),
        "send_message": ({"type": "send_message", "text": "hi"}, frozenset({"can_chat"})),
        "send_private": ({"type": "send_message", "text": "hi", "to": ["target"]}, frozenset({"can_chat"})),
        "publish": ({"type": "publish", "kind": "screen", "sdp": "v=0\r\n"}, frozenset({"can_publish"})),
        "publish_record": (
            {"type": "publish", "kind": "screen", "sdp": "v=0\r\n", "record": True},
            frozenset({"can_publish", "can_record"}),
        ),
        "play": ({"type": "play", "stream": STREAM, "sdp": "v=0\r\n"}, frozenset({"can_play"})),
        "kick": ({"type": "moderate", "action": "kick", "login": "target"}, moderate),
        "force_mute": ({"type": "moderate", "action": "mute", "stream": STREAM, "video": True}, moderate),
        "force_unpublish": ({"type": "moderate", "action": "unpublish", "stream": STREAM}, moderate),
        "lock": ({"type": "moderate", "action": "lock"}, moderate),
        "unlock": ({"type": "moderate", "action": "unlock"}, moderate),
        "set_max_participants": (
            {"type": "moderate", "action": "set_max_participants", "max_participants": 3},
            moderate,
        ),
        "finalize": ({"type": "moderate", "action": "finalize"}, moderate),
    }


MATRIX = [(role, name) for role in ROLE_GRANTS for name in commands()]


@database_sync_to_async
def snapshot() -> dict[str, Any]:
    """Everything a command could change."""
    return {
        "rooms": list(Room.objects.values_list("name", "locked", "max_participants", "finalized_at").order_by("pk")),
        "participants": list(Participant.objects.values_list("login", "state", "role").order_by("pk")),
        "streams": list(Stream.objects.values_list("status", "audio_muted", "video_muted").order_by("pk")),
        "messages": Message.objects.count(),
    }


async def _setup(role: str, grants: list[str] | None = None) -> tuple[RoomClient, RoomClient, RoomClient, str]:
    owner = await RoomClient.open(token=mint_token(ROOM, "owner", role="moderator"))
    assert (await owner.join(ROOM))["type"] == "state"
    target = await RoomClient.open(token=mint_token(ROOM, "target", role="publisher"))
    assert (await target.join(ROOM))["type"] == "state"
    stream = await add_live_stream(ROOM, "target")
    actor = await RoomClient.open(token=mint_token(ROOM, "actor", role=role, grants=grants))
    state = await actor.join(ROOM)
    assert state["type"] == "state" and state["self"]["role"] == role
    return owner, target, actor, stream


def _command(name: str, stream: str) -> dict[str, Any]:
    payload = dict(commands()[name][0])
    return {k: (stream if v == STREAM else v) for k, v in payload.items()}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("role", "name"), MATRIX)
async def test_role_command_matrix(role: str, name: str) -> None:
    """Allowed commands are not refused; refused ones answer ``forbidden`` and change nothing."""
    needed = commands()[name][1]
    allowed = needed <= ROLE_GRANTS[role]
    owner, target, actor, stream = await _setup(role)
    before = await snapshot()
    rid = next(actor.rids)
    await actor.send({**_command(name, stream), "rid": rid})
    # The consumer handles frames in order: a refusal is sent before the pong of a following ping.
    # (Allowed media commands answer later, from the media worker; only the refusal matters here.)
    assert (await actor.request({"type": "ping"}))["type"] == "pong"
    replies = [e for e in actor.seen if e.get("rid") == rid]
    refused = [e for e in replies if e["type"] == "error" and e["code"] == "forbidden"]
    if allowed:
        assert not refused, replies
    else:
        assert refused, replies
        assert needed & {"can_moderate", "can_publish", "can_chat", "can_play", "can_record"}
        assert await snapshot() == before
    for client in (owner, target, actor):
        await client.close()


@pytest.mark.django_db(transaction=True)
async def test_allowed_moderation_takes_effect() -> None:
    """A moderator's kick, force-mute and lock change the room and reach the others."""
    owner, target, actor, stream = await _setup("moderator")
    assert (await actor.request(_command("force_mute", stream)))["type"] == "ack"
    assert (await target.until("stream_updated"))["stream"]["video_muted"] is True
    assert (await actor.request(_command("lock", stream)))["type"] == "ack"
    assert (await owner.until("room_updated"))["room"]["locked"] is True
    assert (await actor.request(_command("kick", stream)))["type"] == "ack"
    assert (await target.until("kicked"))["participant"]["login"] == "target"
    assert (await owner.until("left"))["participant"]["login"] == "target"
    for client in (owner, target, actor):
        await client.close()


@pytest.mark.django_db(transaction=True)
async def test_explicit_grants_override_the_role() -> None:
    """A token's grants replace its role's: a 'moderator' holding only can_play may not chat or moderate."""
    owner, target, actor, stream = await _setup("moderator", grants=["can_play"])
    before = await snapshot()
    for name in ("send_message", "kick", "lock", "publish"):
        reply = await actor.request(_command(name, stream))
        assert reply["type"] == "error" and reply["code"] == "forbidden", (name, reply)
    assert await snapshot() == before
    for client in (owner, target, actor):
        await client.close()


def test_grants_of_roles() -> None:
    """Moderator has every grant, publisher all but moderation, viewer only play and chat."""
    assert ROLE_GRANTS["moderator"] == frozenset(GRANTS)
    assert ROLE_GRANTS["publisher"] == frozenset(GRANTS) - {"can_moderate"}
    assert ROLE_GRANTS["viewer"] == {"can_play", "can_chat"}
    with pytest.raises(RoomError) as refused:
        require_grant(ROLE_GRANTS["viewer"], "can_publish")
    assert refused.value.code == "forbidden"


@pytest.mark.django_db
def test_logged_in_user_role_is_set_by_an_admin() -> None:
    """A Django user joins as publisher unless a UserRole says otherwise."""
    user = User.objects.create_user("ann")
    hello = p.Hello(username="ann")
    assert authenticate_hello(hello, user).role == "publisher"
    UserRole.objects.create(user=user, role="viewer")
    assert authenticate_hello(hello, user).role == "viewer"


@pytest.mark.django_db(transaction=True)
async def test_guest_creator_is_moderator_and_guest_mode_can_be_off(settings: Any) -> None:
    """In guest mode the room's creator moderates; with guest mode off a plain login is refused."""
    first = await RoomClient.open("first")
    assert (await first.join("g"))["self"]["role"] == "moderator"
    second = await RoomClient.open("second")
    assert (await second.join("g"))["self"]["role"] == "publisher"
    settings.ROOMS_GUEST_MODE = False
    guest = await RoomClient.connect()
    failed = await guest.request({"type": "hello", "version": 1, "username": "third"})
    assert failed["type"] == "failed" and failed["code"] == "invalid_token"
    for client in (first, second, guest):
        await client.close()
