"""Finding 3 of issue 11: the client address can be forged, and the per-address count expires.

The deployment under test: a reverse proxy on a TRUSTED_PROXIES address appends
the peer it saw to ``X-Forwarded-For`` (nginx's ``$proxy_add_x_forwarded_for``)
and daphne runs without ``--proxy-headers``.  These tests play that proxy from
127.0.0.1 and write the header a hostile client would make it forward: whatever
the client wrote comes first, the address the proxy saw comes last.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from channels.testing import HttpCommunicator, WebsocketCommunicator

from conference.asgi import application
from rooms import limits
from tests.conftest import require_redis
from tests.security.hostile import WAIT
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)


def stranger() -> str:
    """A client address from the benchmarking range 198.18.0.0/15 that no other test uses."""
    return f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"


def get_status(url: str, forwarded_for: str) -> int:
    """The HTTP status of GET ``url`` with ``X-Forwarded-For``."""
    request = urllib.request.Request(url, headers={"X-Forwarded-For": forwarded_for})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def behind_proxy(transactional_db: Any) -> Iterator[DaphneServer]:
    """A daphne that trusts the proxy on 127.0.0.1 (the test), two WebSockets per address."""
    require_redis()
    env = {"TRUSTED_PROXIES": "127.0.0.1", "WS_MAX_CONNECTIONS_PER_IP": "2"}
    with DaphneServer(env) as server:
        yield server


def test_a_forged_loopback_address_does_not_open_metrics_or_media_stats(behind_proxy: DaphneServer) -> None:
    """Finding 3: a stranger who writes `X-Forwarded-For: 127.0.0.1` (the proxy appends the address it saw)
    gets 403 from /metrics and /media/stats; so does one without a forged header."""
    for path in ("/metrics", "/media/stats"):
        url = behind_proxy.http_url + path
        assert get_status(url, f"127.0.0.1, {stranger()}") == 403
        assert get_status(url, f"::1, 127.0.0.1, {stranger()}") == 403
        assert get_status(url, stranger()) == 403


async def test_the_connection_cap_counts_the_address_the_proxy_saw(behind_proxy: DaphneServer) -> None:
    """Finding 3: three WebSockets of one stranger, each claiming to be 127.0.0.1 (exempt): the third is
    closed with 4429; a stranger at another address still gets in."""
    address = stranger()
    url, origin = f"{behind_proxy.ws_url}/ws/", behind_proxy.http_url
    forged = {"X-Forwarded-For": f"127.0.0.1, {address}"}
    held = [await websockets.connect(url, origin=origin, additional_headers=forged) for _ in range(2)]  # type: ignore[arg-type]
    third = await websockets.connect(url, origin=origin, additional_headers=forged)  # type: ignore[arg-type]
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await third.send('{"type": "ping", "rid": 1}')
        for _ in range(3):
            assert "pong" not in await asyncio.wait_for(third.recv(), WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == limits.CLOSE_TOO_MANY_CONNECTIONS
    other = await websockets.connect(url, origin=origin, additional_headers={"X-Forwarded-For": stranger()})  # type: ignore[arg-type]
    await other.send('{"type": "ping", "rid": 1}')
    assert "pong" in await asyncio.wait_for(other.recv(), WAIT)
    for ws in (*held, other):
        await ws.close()


async def http_status(path: str, peer: str, forwarded_for: str) -> int:
    """The status the in-process ASGI application answers a GET from ``peer`` with ``X-Forwarded-For``."""
    headers = [(b"host", b"localhost"), (b"x-forwarded-for", forwarded_for.encode())]
    comm = HttpCommunicator(application, "GET", path, headers=headers)
    comm.scope["client"] = (peer, 40000)
    response = await comm.get_response(timeout=WAIT)
    return int(response["status"])


async def test_only_a_trusted_peer_can_forward_an_address(settings: Any) -> None:
    """Finding 3: X-Forwarded-For is read right to left through TRUSTED_PROXIES only (networks allowed):
    from an untrusted peer it is ignored; from a trusted one its rightmost untrusted entry is the client."""
    settings.TRUSTED_PROXIES = ["198.18.0.0/24"]
    assert await http_status("/metrics", "198.19.0.5", "127.0.0.1") == 403  # untrusted peer: header ignored
    assert await http_status("/metrics", "198.18.0.5", "127.0.0.1") == 200  # the proxy forwards a local client
    assert await http_status("/metrics", "198.18.0.5", "127.0.0.1, 198.19.0.9") == 403
    assert await http_status("/metrics", "198.18.0.5", "198.19.0.9, 127.0.0.1, 198.18.0.7") == 200
    assert await http_status("/metrics", "198.18.0.5", "garbage, 127.0.0.1") == 200
    assert await http_status("/metrics", "198.18.0.5", "127.0.0.1, garbage") == 403
    settings.TRUSTED_PROXIES = []  # loopback is trusted only when listed
    assert await http_status("/media/stats", "127.0.0.1", "198.19.0.9") == 200
    comm = WebsocketCommunicator(application, "/ws/", headers=[(b"host", b"localhost"),
                                                               (b"origin", b"http://localhost")])
    comm.scope["client"] = ("198.19.1.1", 40000)
    assert (await comm.connect(timeout=WAIT))[0]
    await comm.disconnect()


async def test_the_count_of_an_address_does_not_expire_while_its_connections_are_open(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 3: with a 1 s count lifetime (WS_CONNECTION_COUNT_TTL), an address holding its one allowed
    connection is still refused seconds later: open connections keep their count alive."""
    require_redis()
    settings.WS_MAX_CONNECTIONS_PER_IP = 1
    settings.WS_CONNECTION_COUNT_TTL = 1.0
    monkeypatch.setattr(limits, "COUNT_TTL_SECONDS", 1, raising=False)
    address = stranger()
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]

    def communicator() -> WebsocketCommunicator:
        comm = WebsocketCommunicator(application, "/ws/", headers=headers)
        comm.scope["client"] = (address, 40000)
        return comm

    holder = communicator()
    assert (await holder.connect(timeout=WAIT))[0]
    for _ in range(4):  # 4 x 1 s: several lifetimes of the count
        await asyncio.sleep(1.0)
        extra = communicator()
        await extra.connect(timeout=WAIT)
        await extra.send_json_to({"type": "ping", "rid": 1})
        refused = await extra.receive_json_from(timeout=WAIT)
        assert refused["code"] == "rate_limited", refused
        await extra.disconnect()
    await holder.disconnect()


def test_the_count_of_a_crashed_process_heals(transactional_db: Any) -> None:
    """Finding 3: a daphne process killed with its connections open leaves no count behind for longer than
    WS_CONNECTION_COUNT_TTL (here 1 s): the address may connect again through another process."""
    require_redis()
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).delete(limits.REDIS_KEY_PREFIX + "127.0.0.1")
    address = stranger()
    env = {"TRUSTED_PROXIES": "127.0.0.1", "WS_MAX_CONNECTIONS_PER_IP": "1", "WS_CONNECTION_COUNT_TTL": "1",
           "WS_MAX_CONNECTIONS_EXEMPT": ""}
    headers = {"X-Forwarded-For": address}

    async def hold_then_crash(server: DaphneServer) -> None:
        ws = await websockets.connect(f"{server.ws_url}/ws/", origin=server.http_url, additional_headers=headers)  # type: ignore[arg-type]
        await ws.send('{"type": "ping", "rid": 1}')
        assert "pong" in await asyncio.wait_for(ws.recv(), WAIT)
        assert server.process is not None
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)

    async def connect_again(server: DaphneServer) -> bool:
        for _ in range(40):  # bounded: 40 x 0.25 s
            ws = await websockets.connect(f"{server.ws_url}/ws/", origin=server.http_url, additional_headers=headers)  # type: ignore[arg-type]
            try:
                await ws.send('{"type": "ping", "rid": 1}')
                if "pong" in await asyncio.wait_for(ws.recv(), WAIT):
                    return True
            except websockets.ConnectionClosed:
                pass
            finally:
                await ws.close()
            await asyncio.sleep(0.25)
        return False

    with DaphneServer(env) as first:
        asyncio.run(hold_then_crash(first))
    with DaphneServer(env) as second:
        assert asyncio.run(connect_again(second))


def test_the_forwarded_chain_is_read_right_to_left() -> None:
    """Finding 3: conference.client_address.real_client, rule by rule (no sockets)."""
    from conference.client_address import real_client

    proxies = ["127.0.0.1", "10.0.0.0/8"]
    assert real_client("127.0.0.1", ["198.18.0.1"], []) == "127.0.0.1"  # nobody trusted: the peer
    assert real_client("198.18.0.9", ["127.0.0.1"], proxies) == "198.18.0.9"  # untrusted peer: header ignored
    assert real_client("127.0.0.1", ["127.0.0.1, 198.18.0.1"], proxies) == "198.18.0.1"
    assert real_client("127.0.0.1", ["198.18.0.2, 10.1.2.3"], proxies) == "198.18.0.2"  # two proxies
    assert real_client("127.0.0.1", ["198.18.0.2", "10.1.2.3"], proxies) == "198.18.0.2"  # two headers
    assert real_client("127.0.0.1", ["198.18.0.3:5555"], proxies) == "198.18.0.3"
    assert real_client("127.0.0.1", ["[2001:db8::1]:443"], proxies) == "2001:db8::1"
    assert real_client("127.0.0.1", ["nonsense"], proxies) == "127.0.0.1"  # garbage: the last trusted hop
    assert real_client("127.0.0.1", ["10.0.0.1"], proxies) == "10.0.0.1"  # all trusted: the leftmost
    assert real_client("::ffff:127.0.0.1", ["198.18.0.4"], proxies) == "198.18.0.4"  # IPv4-mapped peer
    assert real_client("127.0.0.1", ["198.18.0.5"], ["not-a-network", "127.0.0.1"]) == "198.18.0.5"
