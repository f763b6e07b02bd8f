"""Join tokens: valid ones admit with their role; tampered, expired, foreign or wrong-room ones are refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from django.conf import settings

from rooms.exceptions import RoomError
from rooms.protocol import ProtocolError
from rooms.tokens import AUDIENCE, mint_token, verify_token
from tests.roomclient import RoomClient

pytestmark = pytest.mark.django_db(transaction=True)


async def _hello_fails(token: str) -> dict[str, object]:
    client = await RoomClient.connect()
    reply = await client.request({"type": "hello", "version": 1, "token": token})
    closed = await client.comm.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4001}
    await client.close()
    return reply


def _claims(**extra: object) -> dict[str, object]:
    return {"aud": AUDIENCE, "sub": "eve", "room": "r", "role": "publisher", "jti": "t1", **extra}


async def test_valid_token_joins_with_role_and_grants() -> None:
    """A fresh token establishes the session as its login and joins its room with its grants."""
    token = mint_token("r", "ann", role="publisher", grants=["can_play", "can_chat"], metadata={"k": 1})
    verified = verify_token(token)
    assert verified.login == "ann" and verified.grants == {"can_play", "can_chat"}
    assert jwt.decode(token, options={"verify_signature": False})["metadata"] == {"k": 1}
    client = await RoomClient.connect()
    reply = await client.request({"type": "hello", "version": 1, "token": token})
    assert reply["type"] == "established" and reply["username"] == "ann"
    state = await client.join("r")
    assert state["self"]["grants"] == ["can_chat", "can_play"]
    await client.close()


async def test_tampered_token_fails_at_connect() -> None:
    """Changing a claim breaks the signature: hello fails with invalid_token and the socket closes."""
    header, _payload, signature = mint_token("r", "ann").split(".")
    forged_payload = jwt.utils.base64url_encode(b'{"aud":"roomapi","sub":"ann","room":"r","role":"moderator"}')
    reply = await _hello_fails(f"{header}.{forged_payload.decode()}.{signature}")
    assert reply["type"] == "failed" and reply["code"] == "invalid_token" and "invalid" in reply["message"]


async def test_token_signed_with_another_secret_fails() -> None:
    """A token signed with a key other than SECRET_KEY is refused."""
    token = jwt.encode(_claims(), "not-our-secret-but-long-enough-for-hs256!", algorithm="HS256")
    reply = await _hello_fails(token)
    assert reply["code"] == "invalid_token"


async def test_unsigned_token_fails() -> None:
    """alg=none is never accepted."""
    token = jwt.encode(_claims(), None, algorithm="none")
    assert (await _hello_fails(token))["code"] == "invalid_token"


async def test_expired_token_fails_at_connect() -> None:
    """An expired token is refused with a message saying so."""
    past = datetime.now(UTC) - timedelta(seconds=5)
    token = jwt.encode(_claims(exp=past), settings.SECRET_KEY, algorithm="HS256")
    reply = await _hello_fails(token)
    assert reply["code"] == "invalid_token" and "expired" in reply["message"]


def test_short_lived_token_expires() -> None:
    """mint_token's ttl is honoured."""
    token = mint_token("r", "ann", ttl_seconds=1)
    time.sleep(1.1)
    with pytest.raises(RoomError) as refused:
        verify_token(token)
    assert "expired" in refused.value.message


async def test_wrong_room_token_is_refused() -> None:
    """A token for room A may not join room B: join answers invalid_token naming both rooms; nothing is created."""
    from channels.db import database_sync_to_async

    from rooms.models import Room

    client = await RoomClient.open(token=mint_token("room-a", "ann"))
    reply = await client.join("room-b")
    assert reply["type"] == "error" and reply["code"] == "invalid_token"
    assert "room-a" in reply["message"] and "room-b" in reply["message"]
    assert not await database_sync_to_async(Room.objects.exists)()
    assert (await client.join("room-a"))["type"] == "state"
    await client.close()


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": AUDIENCE, "room": "r"},
        {"aud": AUDIENCE, "sub": "eve"},
        {"aud": AUDIENCE, "sub": "eve", "room": "r", "role": "king"},
        {"aud": AUDIENCE, "sub": "eve", "room": "r", "grants": ["can_fly"]},
        {"aud": "someone-else", "sub": "eve", "room": "r"},
    ],
)
async def test_malformed_claims_fail(claims: dict[str, object]) -> None:
    """Missing login or room, unknown role or grant, or another audience: refused at connect."""
    token = jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256")
    assert (await _hello_fails(token))["code"] == "invalid_token"


def test_mint_refuses_bad_input() -> None:
    """Unknown roles or grants, empty names and non-positive lifetimes are refused when minting."""
    for kwargs in ({"role": "king"}, {"grants": ["can_fly"]}, {"ttl_seconds": 0}):
        with pytest.raises(RoomError):
            mint_token("r", "ann", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        mint_token("r", "  ")
