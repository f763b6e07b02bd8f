"""TURN REST credentials (rooms/turn.py), checked against Debian's coturn itself."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection
from django.test import override_settings

from media_relay.aiortc_compat import selected_candidate_types
from rooms.turn import ice_servers, mint_credential
from tests.turnserver import TURNSERVER, TurnServer

WAIT = 20.0


def test_credential_is_expiry_colon_id_with_a_base64_hmac() -> None:
    """username ``<expiry>:<id>``, password the base64 of a 20-byte HMAC-SHA1; unsafe characters replaced."""
    credential = mint_credential("ann:x y", "s3cret", 600, now=1_000_000)
    assert credential.username == "1000600:ann_x_y"
    assert credential.expires == 1_000_600
    assert len(base64.b64decode(credential.password)) == 20
    assert mint_credential("ann:x y", "s3cret", 600, now=1_000_000) == credential
    assert mint_credential("ann:x y", "other", 600, now=1_000_000).password != credential.password
    with pytest.raises(ValueError):
        mint_credential("ann", "", 600)


def test_ice_servers_hand_out_stun_and_fresh_turn_credentials() -> None:
    """STUN URLs as they are, TURN URLs with a credential valid TURN_TTL seconds; no TURN without a secret."""
    urls = ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349?transport=tcp"]
    with override_settings(ICE_STUN_URLS=["stun:turn.example.com:3478"], TURN_URLS=urls, TURN_SECRET="k", TURN_TTL=60):
        servers = ice_servers("sess1", now=100)
    assert servers[0] == {"urls": ["stun:turn.example.com:3478"]}
    assert servers[1]["urls"] == urls
    assert servers[1]["username"] == "160:sess1"
    assert servers[1]["credential"] == mint_credential("sess1", "k", 60, now=100).password
    with override_settings(ICE_STUN_URLS=[], TURN_URLS=urls, TURN_SECRET=""):
        assert ice_servers("sess1") == []


@pytest.fixture(scope="module")
def turn() -> Iterator[TurnServer]:
    """coturn on loopback (scripts/system-deps.sh installs it)."""
    if not shutil.which(TURNSERVER) and not os.path.exists(TURNSERVER):
        if os.environ.get("CI") == "true":
            pytest.fail("coturn's turnserver is required under CI; run scripts/system-deps.sh")
        pytest.skip("needs coturn's turnserver (scripts/system-deps.sh installs it)")
    with TurnServer() as server:
        yield server


def relay_only(turn: TurnServer, username: str, password: str) -> RTCConfiguration:
    """A configuration that gathers relay candidates from ``turn`` only."""
    server = RTCIceServer(urls=[turn.url], username=username, credential=password)
    return RTCConfiguration(iceServers=[server], iceTransportPolicy=RTCIceTransportPolicy.RELAY)


async def connect_pair(first: RTCPeerConnection, second: RTCPeerConnection) -> Any:
    """Offer/answer between two local peers over a data channel; the offerer's channel."""
    channel = first.createDataChannel("probe")
    await first.setLocalDescription(await first.createOffer())
    await second.setRemoteDescription(first.localDescription)
    await second.setLocalDescription(await second.createAnswer())
    await first.setRemoteDescription(second.localDescription)
    return channel


async def wait_state(pc: RTCPeerConnection, states: tuple[str, ...], timeout: float = WAIT) -> str:
    """Poll (bounded) until the connection state is one of ``states``."""
    deadline = time.monotonic() + timeout
    while pc.connectionState not in states:
        if time.monotonic() > deadline:
            raise AssertionError(f"connection state stayed {pc.connectionState}, wanted {states}")
        await asyncio.sleep(0.05)
    return pc.connectionState


async def test_relay_only_peers_connect_through_coturn(turn: TurnServer) -> None:
    """Two relay-only aiortc peers with minted credentials select a relay/relay pair and exchange data."""
    first_credential = mint_credential("ann", turn.secret, 300)
    second_credential = mint_credential("bob", turn.secret, 300)
    first = RTCPeerConnection(relay_only(turn, first_credential.username, first_credential.password))
    second = RTCPeerConnection(relay_only(turn, second_credential.username, second_credential.password))
    received: asyncio.Queue[str] = asyncio.Queue()

    @second.on("datachannel")
    def on_channel(channel: Any) -> None:
        channel.on("message", lambda message: received.put_nowait(message))

    try:
        channel = await connect_pair(first, second)
        assert await wait_state(first, ("connected", "failed")) == "connected", turn.log_text()[-3000:]
        await wait_state(second, ("connected",))
        for pc in (first, second):
            local = pc.sctp.transport.transport.iceGatherer.getLocalCandidates()  # type: ignore[union-attr]
            assert local and {c.type for c in local} == {"relay"}, local
            types = selected_candidate_types(pc.sctp.transport.transport)  # type: ignore[union-attr]
            assert types == ("relay", "relay"), types
        opened = asyncio.get_running_loop().create_future()
        channel.on("open", lambda: opened.done() or opened.set_result(None))
        if channel.readyState != "open":
            await asyncio.wait_for(opened, WAIT)
        channel.send("through the relay")
        assert await asyncio.wait_for(received.get(), WAIT) == "through the relay"
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("case", ["wrong secret", "expired"])
async def test_bad_credentials_get_no_relay(turn: TurnServer, case: str) -> None:
    """coturn refuses a credential minted with another secret or already expired: no relay, no connection."""
    if case == "wrong secret":
        credential = mint_credential(f"ann-{case[0]}", "not-" + turn.secret, 300)
    else:
        credential = mint_credential(f"ann-{case[0]}", turn.secret, 60, now=time.time() - 120)
    good = mint_credential("bob", turn.secret, 300)
    first = RTCPeerConnection(relay_only(turn, credential.username, credential.password))
    second = RTCPeerConnection(relay_only(turn, good.username, good.password))
    try:
        await connect_pair(first, second)
        assert first.sctp.transport.transport.iceGatherer.getLocalCandidates() == []  # type: ignore[union-attr]
        assert f"Cannot find credentials of user <{credential.username}>" in turn.log_text()
        await asyncio.sleep(2)
        assert first.connectionState != "connected"
    finally:
        await first.close()
        await second.close()
