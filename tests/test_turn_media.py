"""Clients in relay-only mode publish and play through a real coturn with the credentials the server mints."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCIceServer

import roomapi
from media_relay.aiortc_compat import selected_candidate_types
from roomapi import ERROR_CODE, ROOM_EVENT, STREAM_STATUS, RoomApiError
from rooms.turn import mint_credential
from tests.media_sources import CounterVideoTrack, ToneAudioTrack
from tests.servers import DaphneServer
from tests.turnserver import TURNSERVER, TurnServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0


@pytest.fixture
def turn() -> Iterator[TurnServer]:
    """coturn on loopback (scripts/system-deps.sh installs it)."""
    if not shutil.which(TURNSERVER) and not os.path.exists(TURNSERVER):
        if os.environ.get("CI") == "true":
            pytest.fail("coturn's turnserver is required under CI; run scripts/system-deps.sh")
        pytest.skip("needs coturn's turnserver (scripts/system-deps.sh installs it)")
    with TurnServer() as server:
        yield server


@pytest.fixture
def server(transactional_db: Any, turn: TurnServer) -> Iterator[DaphneServer]:
    """A daphne process that hands out coturn's URL with minted credentials."""
    env = {"TURN_URLS": turn.url, "TURN_SECRET": turn.secret, "TURN_TTL": "300", "MEDIA_CONNECT_TIMEOUT": "10",
           # coturn listens on loopback here: its relay candidates must pass the relay's candidate screening.
           "MEDIA_ALLOWED_CANDIDATE_NETWORKS": "127.0.0.1/32",
           # Its own media registry: no room of its may land on another live server's worker (see test_turn_browser).
           "REDIS_URL": ""}
    with DaphneServer(env) as srv:
        yield srv


def pair_types(pc: Any) -> tuple[str, str] | None:
    """The candidate types of the pair a peer connection selected."""
    transport = pc.getTransceivers()[0].sender.transport
    return selected_candidate_types(transport.transport)


async def test_relay_only_clients_publish_and_play_through_coturn(server: DaphneServer, turn: TurnServer) -> None:
    """Both SDK peers use the server's TURN credentials, select a relay candidate pair, and the video plays."""
    ann = await roomapi.connect(server.ws_url, "ann", ice_transport_policy="relay")
    bob = await roomapi.connect(server.ws_url, "bob", ice_transport_policy="relay")
    try:
        assert [s.urls for s in ann.ice_servers] == [[turn.url]]
        assert ann.ice_servers[0].username.endswith(f":{ann.session}")
        room_a, room_b = await ann.join("turn"), await bob.join("turn")
        published = await room_a.publish(video=CounterVideoTrack(), audio=ToneAudioTrack())
        await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
        await room_b.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
        participant = room_b.get_participant("ann")
        assert participant is not None
        play = await participant.get_streams()[0].play()
        await play.wait_for(STREAM_STATUS.PLAYING, timeout=WAIT)
        assert play.video is not None
        await asyncio.wait_for(play.video.recv(), WAIT)
        assert pair_types(published.pc) is not None and pair_types(published.pc)[0] == "relay"  # type: ignore[index]
        assert pair_types(play.pc) is not None and pair_types(play.pc)[0] == "relay"  # type: ignore[index]
        log = turn.log_text()
        assert ann.ice_servers[0].username in log and bob.ice_servers[0].username in log
    finally:
        await ann.disconnect()
        await bob.disconnect()


@pytest.mark.parametrize("case", ["wrong secret", "expired"])
async def test_a_refused_turn_credential_fails_with_ice_failed(
    server: DaphneServer, turn: TurnServer, case: str
) -> None:
    """Relay-only with a credential coturn refuses: publish fails at once with ICE_FAILED and says why."""
    if case == "wrong secret":
        credential = mint_credential("ann", "not-" + turn.secret, 300)
    else:
        credential = mint_credential("ann", turn.secret, 60, now=time.time() - 120)
    own = [RTCIceServer(urls=[turn.url], username=credential.username, credential=credential.password)]
    ann = await roomapi.connect(server.ws_url, "ann", ice_servers=own, ice_transport_policy="relay")
    try:
        room = await ann.join("turn-refused")
        with pytest.raises(RoomApiError) as refused:
            await room.publish(video=CounterVideoTrack())
        assert refused.value.code == ERROR_CODE.ICE_FAILED
        assert "TURN server refused the credential" in str(refused.value)
    finally:
        await ann.disconnect()
