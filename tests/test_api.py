"""The REST API: authentication, rooms, participants, streams, messages, tokens; live effects."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from rooms.models import APIKey, Message, Participant, Room, Stream
from tests.roomclient import RoomClient, add_live_stream

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async

ENDPOINTS = [
    ("get", "/api/rooms"),
    ("post", "/api/rooms"),
    ("get", "/api/rooms/r1"),
    ("post", "/api/rooms/r1/finalize"),
    ("post", "/api/rooms/r1/tokens"),
    ("get", "/api/rooms/r1/participants"),
    ("post", "/api/rooms/r1/participants/alice/kick"),
    ("get", "/api/rooms/r1/streams"),
    ("post", f"/api/rooms/r1/streams/{'0' * 32}/mute"),
    ("post", f"/api/rooms/r1/streams/{'0' * 32}/unpublish"),
    ("get", "/api/rooms/r1/messages"),
    ("post", "/api/rooms/r1/messages"),
]


def api(key: str | None = None) -> APIClient:
    """An API client, with an API key when given."""
    client = APIClient()
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def key() -> str:
    """A valid API key."""
    return APIKey.create_key("tests")[1]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_unauthenticated_is_refused(method: str, path: str) -> None:
    """Without credentials every endpoint answers 401 and names the Api-Key scheme."""
    response = getattr(api(), method)(path, {}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_wrong_key_is_refused(method: str, path: str, key: str) -> None:
    """A made-up key, a tampered key and a revoked key are all refused with 401."""
    assert getattr(api("0000aaaa.not-a-key"), method)(path, {}, format="json").status_code == 401
    assert getattr(api(key + "x"), method)(path, {}, format="json").status_code == 401
    APIKey.objects.update(active=False)
    assert getattr(api(key), method)(path, {}, format="json").status_code == 401
    assert Room.objects.count() == 0


def test_right_key_and_staff_session(key: str) -> None:
    """A valid key or a staff session may list rooms; a non-staff session may not."""
    assert api(key).get("/api/rooms").status_code == 200
    assert APIKey.objects.get().last_used_at is not None
    staff = User.objects.create_user("boss", password="pw", is_staff=True)
    client = APIClient()
    client.force_login(staff)
    assert client.get("/api/rooms").status_code == 200
    plain = User.objects.create_user("joe", password="pw")
    client = APIClient()
    client.force_login(plain)
    assert client.get("/api/rooms").status_code == 403


def test_only_a_hash_of_the_key_is_stored(key: str) -> None:
    """The raw key is nowhere in the database."""
    stored = APIKey.objects.get()
    assert key not in (stored.hashed_key, stored.prefix, stored.name)
    assert len(stored.hashed_key) == 64


def test_create_list_filter_finalize(key: str) -> None:
    """Create with settings, refuse a duplicate, filter active/finished, paginate, finalize."""
    client = api(key)
    response = client.post(
        "/api/rooms", {"name": "r1", "max_participants": 3, "record": True, "locked": True}, format="json"
    )
    assert response.status_code == 201, response.data
    assert response.data["max_participants"] == 3 and response.data["record"] and response.data["locked"]
    assert response.data["active"] is True and response.data["participants"] == []
    duplicate = client.post("/api/rooms", {"name": "r1"}, format="json")
    assert duplicate.status_code == 409 and duplicate.data["code"] == "room_exists"
    assert client.post("/api/rooms", {"name": ""}, format="json").status_code == 400
    client.post("/api/rooms", {"name": "r2"}, format="json")
    finalized = client.post("/api/rooms/r2/finalize")
    assert finalized.status_code == 200 and finalized.data["active"] is False
    assert client.post("/api/rooms/r2/finalize").status_code == 409
    assert [r["name"] for r in client.get("/api/rooms?status=active").data["results"]] == ["r1"]
    assert [r["name"] for r in client.get("/api/rooms?status=finished").data["results"]] == ["r2"]
    assert client.get("/api/rooms?search=R").data["count"] == 2
    everything = client.get("/api/rooms").data
    assert everything["count"] == 2 and {"next", "previous", "results"} <= set(everything)
    assert client.get("/api/rooms/nope").status_code == 404


async def _room_with(alice_role: str = "moderator") -> tuple[RoomClient, RoomClient]:
    alice = await RoomClient.open("alice")
    assert (await alice.join("live"))["type"] == "state"
    bob = await RoomClient.open("bob")
    assert (await bob.join("live"))["type"] == "state"
    await alice.until("joined")
    return alice, bob


async def test_retrieve_shows_live_participants_and_streams(key: str) -> None:
    """A live room's detail lists who is present and what is published."""
    alice, bob = await _room_with()
    stream_id = await add_live_stream("live", "bob")
    response = await db(api(key).get)("/api/rooms/live")
    assert response.status_code == 200
    data = response.data
    assert data["participants_now"] == 2 and data["streams_now"] == 1
    assert [p["login"] for p in data["participants"]] == ["alice", "bob"]
    assert [s["id"] for s in data["streams"]] == [stream_id]
    listed = await db(api(key).get)("/api/rooms/live/streams")
    assert [s["owner"] for s in listed.data["results"]] == ["bob"]
    people = await db(api(key).get)("/api/rooms/live/participants")
    assert [p["role"] for p in people.data["results"]] == ["moderator", "publisher"]
    await alice.close()
    await bob.close()


async def test_kick_from_rest_reaches_the_live_client(key: str) -> None:
    """POST .../participants/bob/kick: bob gets kicked at once, alice gets left."""
    alice, bob = await _room_with()
    response = await db(api(key).post)("/api/rooms/live/participants/bob/kick")
    assert response.status_code == 204
    kicked = await bob.until("kicked")
    assert kicked["participant"]["login"] == "bob" and "server" in kicked["reason"]
    left = await alice.until("left")
    assert left["participant"]["login"] == "bob"
    assert (await db(Participant.objects.get)(login="bob", room__name="live")).state == "left"
    again = await db(api(key).post)("/api/rooms/live/participants/bob/kick")
    assert again.status_code == 404 and again.data["code"] == "participant_not_found"
    await alice.close()
    await bob.close()


async def test_force_mute_and_unpublish_from_rest_reach_live_clients(key: str) -> None:
    """Force-mute sends stream_updated to the room; force-unpublish ends the stream for everyone."""
    alice, bob = await _room_with()
    stream_id = await add_live_stream("live", "bob")
    response = await db(api(key).post)(f"/api/rooms/live/streams/{stream_id}/mute", {"video": True}, format="json")
    assert response.status_code == 200 and response.data["video_muted"] and not response.data["audio_muted"]
    for client in (alice, bob):
        updated = await client.until("stream_updated")
        assert updated["stream"]["id"] == stream_id and updated["stream"]["video_muted"] is True
    response = await db(api(key).post)(f"/api/rooms/live/streams/{stream_id}/unpublish")
    assert response.status_code == 200 and response.data["status"] == "UNPUBLISHED"
    status = await bob.until("stream_status")
    assert status["status"] == "UNPUBLISHED" and "server" in status["reason"]
    assert (await alice.until("unpublished"))["stream"]["id"] == stream_id
    missing = await db(api(key).post)(f"/api/rooms/live/streams/{stream_id}/mute", {}, format="json")
    assert missing.status_code == 404 and missing.data["code"] == "stream_not_found"
    assert (await db(api(key).post)("/api/rooms/live/streams/bad/mute", {}, format="json")).status_code == 404
    await alice.close()
    await bob.close()


async def test_server_messages_and_private_history(key: str) -> None:
    """Server messages reach the room or only their recipients; ?login= shows only what that login may see."""
    alice, bob = await _room_with()
    carol = await RoomClient.open("carol")
    await carol.join("live")
    client = api(key)
    response = await db(client.post)("/api/rooms/live/messages", {"text": "hello all"}, format="json")
    assert response.status_code == 201 and response.data["from"] is None and response.data["to"] is None
    for c in (alice, bob, carol):
        assert (await c.until("message"))["message"]["text"] == "hello all"
    private = await db(client.post)("/api/rooms/live/messages", {"text": "psst", "to": ["bob"]}, format="json")
    assert private.status_code == 201 and private.data["to"] == ["bob"]
    assert (await bob.until("message"))["message"]["text"] == "psst"
    await alice.request({"type": "send_message", "text": "for carol", "to": ["carol"]})
    assert (await carol.until("message"))["message"]["text"] == "for carol"
    everything = await db(client.get)("/api/rooms/live/messages")
    assert [m["text"] for m in everything.data["results"]] == ["hello all", "psst", "for carol"]
    bobs = await db(client.get)("/api/rooms/live/messages?login=bob")
    assert [m["text"] for m in bobs.data["results"]] == ["hello all", "psst"]
    alices = await db(client.get)("/api/rooms/live/messages?login=alice")
    assert [m["text"] for m in alices.data["results"]] == ["hello all", "for carol"]
    unknown = await db(client.post)("/api/rooms/live/messages", {"text": "x", "to": ["zed"]}, format="json")
    assert unknown.status_code == 400 and unknown.data["code"] == "unknown_recipient"
    assert await db(Message.objects.count)() == 3
    assert bob.comm.output_queue.qsize() == 0 or all(e.get("type") != "message" for e in bob.seen)
    for c in (alice, bob, carol):
        await c.close()


async def test_minted_token_joins_with_its_role(key: str) -> None:
    """POST .../tokens gives a token that joins as a viewer; the viewer may chat but not publish."""
    response = await db(api(key).post)(
        "/api/rooms/webinar/tokens",
        {"login": "vic", "role": "viewer", "ttl_seconds": 60, "metadata": {"seat": 7}},
        format="json",
    )
    assert response.status_code == 201, response.data
    assert response.data["grants"] == ["can_chat", "can_play"] and response.data["expires_at"]
    vic = await RoomClient.open(token=response.data["token"])
    state = await vic.join("webinar")
    assert state["type"] == "state" and state["self"]["login"] == "vic" and state["self"]["role"] == "viewer"
    refused = await vic.request({"type": "publish", "kind": "camera", "sdp": "v=0"})
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    assert await db(Stream.objects.count)() == 0
    await vic.close()


def test_token_request_validation(key: str) -> None:
    """Bad roles, grants, lifetimes and logins are refused with 400."""
    client = api(key)
    for body in (
        {"login": "a", "role": "king"},
        {"login": "a", "grants": ["can_fly"]},
        {"login": "a", "ttl_seconds": 0},
        {"login": ""},
        {},
    ):
        assert client.post("/api/rooms/r/tokens", body, format="json").status_code == 400, body
    granted = client.post(
        "/api/rooms/r/tokens", {"login": "a", "grants": ["can_play"], "ttl_seconds": None}, format="json"
    )
    assert granted.status_code == 201 and granted.data["grants"] == ["can_play"]
    assert granted.data["expires_at"] is not None


def test_schema_and_docs_are_served() -> None:
    """/api/schema/ is OpenAPI 3 with the Api-Key scheme; /api/docs/ is Swagger UI."""
    schema = api().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    data: dict[str, Any] = schema.json()
    assert data["openapi"].startswith("3.") and "ApiKeyAuth" in data["components"]["securitySchemes"]
    assert "/api/rooms/{room_name}/tokens" in data["paths"]
    assert api().get("/api/docs/").status_code == 200
