"""The namespace helpers themselves: loss rules and bandwidth caps do what the media tests rely on."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from tests.network.netns import Namespace, list_namespaces, netem_missing

PAYLOAD = b"x" * 1200


def udp_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((address, 0))
    sock.settimeout(0.5)
    return sock


def blast(sender: socket.socket, receiver: socket.socket, count: int) -> int:
    """Send ``count`` datagrams as fast as possible; how many arrived (bounded wait)."""
    target = receiver.getsockname()
    for _ in range(count):
        sender.sendto(PAYLOAD, target)
    received = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            receiver.recv(2048)
        except TimeoutError:
            break
        received += 1
    return received


def test_udp_drop_rule_drops_what_the_namespace_sends(lan: Namespace) -> None:
    """0 %: every datagram arrives; 100 %: none; the namespace has only 198.18.0.0/15 addresses besides lo."""
    assert sorted(lan.addresses()) == ["198.18.0.1", "198.18.0.2"]
    sender, receiver = lan.call(lambda: (udp_socket("198.18.0.1"), udp_socket("198.18.0.2")))
    try:
        lan.drop_udp(0)
        assert blast(sender, receiver, 50) == 50
        lan.drop_udp(100)
        assert blast(sender, receiver, 50) == 0
        lan.drop_udp(0)
        assert blast(sender, receiver, 50) == 50
    finally:
        sender.close()
        receiver.close()


def test_a_capped_link_between_two_namespaces(namespaces: Callable[[str], Namespace]) -> None:
    """A relay namespace and a player namespace joined by a veth pair; tbf on the relay's side caps the player."""
    relay, player = namespaces("relay"), namespaces("player")
    relay.veth("toplayer", "198.18.1.1/24", peer=player, peer_device="torelay", peer_address="198.18.1.2/24")
    sender = relay.call(lambda: udp_socket("198.18.1.1"))
    receiver = player.call(lambda: udp_socket("198.18.1.2"))
    try:
        assert blast(sender, receiver, 100) == 100
        relay.cap("toplayer", 400)
        capped = blast(sender, receiver, 100)  # 120 kB at once through a 400 kbit/s bucket of 16 kB
        assert 5 <= capped <= 50, capped
        relay.uncap("toplayer")
        assert blast(sender, receiver, 100) == 100
    finally:
        sender.close()
        receiver.close()


def test_namespaces_are_removed(namespaces: Callable[[str], Namespace]) -> None:
    """delete() removes the namespace (the fixture does it after every test, whatever happens)."""
    scratch = namespaces("scratch")
    assert scratch.name in list_namespaces()
    scratch.delete()
    assert scratch.name not in list_namespaces()


def test_delay_where_the_kernel_has_netem(namespaces: Callable[[str], Namespace]) -> None:
    """netem delay on a link shows in the round trip (skipped with the reason on kernels without netem)."""
    reason = netem_missing()
    if reason:
        pytest.skip(reason)
    host = namespaces("delay")
    host.veth("d0", "198.18.2.1/24", peer=host, peer_device="d1", peer_address="198.18.2.2/24")
    host.delay("d0", 100)
    result = host.run(["ping", "-c", "1", "-W", "3", "-I", "198.18.2.1", "198.18.2.2"], check=False)
    assert result.returncode == 0, result.stdout
