"""The admin: live room status, moderation reaching live clients, read-only finished rooms, keys and webhooks."""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from rooms import services
from rooms.models import APIKey, Participant, Room, Stream, WebhookDelivery, WebhookEndpoint
from tests.roomclient import RoomClient, add_live_stream

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


def staff_client() -> Client:
    """A logged-in superuser."""
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


async def _live_room() -> tuple[Client, RoomClient, RoomClient, Room]:
    admin = await db(staff_client)()
    alice = await RoomClient.open("alice")
    await alice.join("live")
    bob = await RoomClient.open("bob")
    await bob.join("live")
    await alice.until("joined")
    room = await db(Room.objects.get)(name="live")
    return admin, alice, bob, room


async def test_changelist_shows_live_status_and_filters() -> None:
    """Rooms list participants and streams now; the status filter and search work."""
    admin, alice, bob, _room = await _live_room()
    await add_live_stream("live", "bob")
    await db(services.finalize_room)((await db(Room.objects.create)(name="old", max_participants=2)).pk)
    page = (await db(admin.get)("/admin/rooms/room/")).content.decode()
    row = re.search(r"<tr>.*?>live</a>.*?</tr>", page, re.S)
    assert row is not None
    cells = re.findall(r'<td class="field-(participants_now|streams_now)">(\d+)</td>', row.group(0))
    assert dict(cells) == {"participants_now": "2", "streams_now": "1"}
    active = (await db(admin.get)("/admin/rooms/room/?status=active")).content.decode()
    assert ">live</a>" in active and ">old</a>" not in active
    finished = (await db(admin.get)("/admin/rooms/room/?status=finished")).content.decode()
    assert ">old</a>" in finished and ">live</a>" not in finished
    assert ">live</a>" in (await db(admin.get)("/admin/rooms/room/?q=bob")).content.decode()
    await alice.close()
    await bob.close()


async def test_kick_button_reaches_the_live_client() -> None:
    """The change page's Kick button kicks at once: bob gets kicked, alice gets left."""
    admin, alice, bob, room = await _live_room()
    page = (await db(admin.get)(f"/admin/rooms/room/{room.pk}/change/")).content.decode()
    assert f"/admin/rooms/room/{room.pk}/kick/bob/" in page and "Present now" in page
    assert (await db(admin.get)(f"/admin/rooms/room/{room.pk}/kick/bob/")).status_code == 405
    response = await db(admin.post)(f"/admin/rooms/room/{room.pk}/kick/bob/")
    assert response.status_code == 302
    kicked = await bob.until("kicked")
    assert "administrator" in kicked["reason"]
    assert (await alice.until("left"))["participant"]["login"] == "bob"
    assert (await db(Participant.objects.get)(login="bob")).state == "left"
    await alice.close()
    await bob.close()


async def test_force_mute_action_and_unpublish_button_reach_live_clients() -> None:
    """The stream action force-mutes at once; the Force-unpublish button ends the stream for everyone."""
    admin, alice, bob, room = await _live_room()
    stream_id = await add_live_stream("live", "bob")
    stream = await db(Stream.objects.get)(public_id=stream_id)
    response = await db(admin.post)(
        "/admin/rooms/stream/", {"action": "force_mute_audio", "_selected_action": [stream.pk]}
    )
    assert response.status_code == 302
    for client in (alice, bob):
        updated = await client.until("stream_updated")
        assert updated["stream"]["id"] == stream_id and updated["stream"]["audio_muted"] is True
    page = (await db(admin.get)(f"/admin/rooms/room/{room.pk}/change/")).content.decode()
    assert f"/unpublish/{stream_id}/" in page
    await db(admin.post)(f"/admin/rooms/room/{room.pk}/unpublish/{stream_id}/")
    assert (await bob.until("stream_status"))["status"] == "UNPUBLISHED"
    assert (await alice.until("unpublished"))["stream"]["id"] == stream_id
    await alice.close()
    await bob.close()


async def test_finalize_action_closes_the_room_and_it_becomes_read_only() -> None:
    """Finalizing from the list tells everyone; afterwards the room cannot be changed or moderated."""
    admin, alice, bob, room = await _live_room()
    response = await db(admin.post)("/admin/rooms/room/", {"action": "finalize_rooms", "_selected_action": [room.pk]})
    assert response.status_code == 302
    for client in (alice, bob):
        assert (await client.until("room_closed"))["room"]["name"] == "live"
    page = await db(admin.get)(f"/admin/rooms/room/{room.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert (await db(admin.post)(f"/admin/rooms/room/{room.pk}/change/", {"locked": "on"})).status_code == 403
    assert (await db(admin.post)(f"/admin/rooms/room/{room.pk}/kick/bob/")).status_code == 403
    participant = await db(Participant.objects.get)(login="alice")
    assert (await db(admin.post)(f"/admin/rooms/participant/{participant.pk}/change/", {})).status_code == 403
    await alice.close()
    await bob.close()


async def test_lock_from_the_change_form_reaches_clients() -> None:
    """Ticking 'locked' and saving tells the room (room_updated)."""
    admin, alice, bob, room = await _live_room()
    form = {
        "max_participants": "5",
        "record": "",
        "locked": "on",
        "participants-TOTAL_FORMS": "2",
        "participants-INITIAL_FORMS": "2",
        "participants-MIN_NUM_FORMS": "0",
        "participants-MAX_NUM_FORMS": "1000",
    }
    for i, participant in enumerate(await db(list)(Participant.objects.filter(room=room).order_by("joined_at", "pk"))):
        form.update(
            {
                f"participants-{i}-id": str(participant.pk),
                f"participants-{i}-room": str(room.pk),
                f"participants-{i}-role": participant.role,
            }
        )
    response = await db(admin.post)(f"/admin/rooms/room/{room.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    updated = await alice.until(lambda e: e["type"] == "room_updated" and e["room"]["max_participants"] == 5)
    assert updated["room"]["locked"] is True
    await alice.close()
    await bob.close()


def test_api_key_is_shown_once_and_works() -> None:
    """Adding a key shows it once; the stored row has only a hash; the key authenticates REST calls."""
    admin = staff_client()
    response = admin.post("/admin/rooms/apikey/add/", {"name": "backend", "active": "on"}, follow=True)
    shown = re.search(r"The new API key is (\S+)", response.content.decode())
    assert shown is not None
    raw = shown.group(1)
    key = APIKey.objects.get()
    assert raw.startswith(key.prefix) and raw not in key.hashed_key
    assert raw not in admin.get(f"/admin/rooms/apikey/{key.pk}/change/").content.decode()
    assert Client().get("/api/rooms", HTTP_AUTHORIZATION=f"Api-Key {raw}").status_code == 200
    admin.post("/admin/rooms/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert Client().get("/api/rooms", HTTP_AUTHORIZATION=f"Api-Key {raw}").status_code == 401


def test_webhook_endpoint_form_and_delivery_log() -> None:
    """Endpoints are configured with event checkboxes; the delivery log lists attempts and errors."""
    admin = staff_client()
    response = admin.post(
        "/admin/rooms/webhookendpoint/add/",
        {"url": "http://127.0.0.1:9/hook", "secret": "s", "events": ["room_started", "message_sent"], "active": "on"},
    )
    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["room_started", "message_sent"]
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_type="room_started",
        payload={},
        status="failed",
        attempts=3,
        last_error="HTTP 500 boom",
    )
    log = admin.get("/admin/rooms/webhookdelivery/?status__exact=failed").content.decode()
    assert "HTTP 500 boom" in log and "room_started" in log
    assert "1 deliveries" in admin.get("/admin/rooms/webhookendpoint/").content.decode()
