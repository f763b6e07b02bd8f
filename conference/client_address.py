"""The real client address: X-Forwarded-For believed only through TRUSTED_PROXIES, read right to left.

``RealClientAddressMiddleware`` wraps the whole ASGI application (conference/asgi.py),
so HTTP (Django's ``REMOTE_ADDR``: /metrics, /media/stats) and WebSockets (the
per-address cap in rooms.limits) see one and the same address.  It replaces
daphne's ``--proxy-headers``, which believes the leftmost entry: the one the
client writes.  docs/deployment.md describes the set-up.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks of TRUSTED_PROXIES entries (addresses or CIDR networks); bad entries are logged and skipped."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            logger.error("TRUSTED_PROXIES: %r is not an address or a network; ignored", entry)
    return tuple(networks)


def parse_address(value: str) -> Address | None:
    """An IP address from a forwarded entry (``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:5678``, ``::1``), else None."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def real_client(peer: str, forwarded_for: Iterable[str], trusted: Iterable[str]) -> str:
    """The client address of a connection from ``peer`` with these ``X-Forwarded-For`` header values.

    Walks the forwarded chain from the right while each hop is a trusted proxy; the first
    untrusted entry is the client.  An entry that is not an address stops the walk at the last
    trusted hop.  From an untrusted peer the header is ignored.
    """
    networks = trusted_networks(tuple(trusted))
    current = parse_address(peer)
    if current is None or not networks or not _trusted(current, networks):
        return peer
    entries = [item for value in forwarded_for for item in value.split(",") if item.strip()]
    for entry in reversed(entries):
        address = parse_address(entry)
        if address is None:
            break
        current = address
        if not _trusted(address, networks):
            break
    return str(current)


class RealClientAddressMiddleware:
    """ASGI middleware: ``scope["client"]`` becomes the real client address (HTTP and WebSocket).

    The peer daphne saw is kept in ``scope["peer"]``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        client = scope.get("client")
        if scope.get("type") in ("http", "websocket") and client and settings.TRUSTED_PROXIES:
            forwarded = [
                value.decode("latin-1")
                for name, value in scope.get("headers", ())
                if name.lower() == b"x-forwarded-for"
            ]
            if forwarded:
                address = real_client(str(client[0]), forwarded, settings.TRUSTED_PROXIES)
                if address != client[0]:
                    scope = {**scope, "client": (address, 0), "peer": tuple(client)}
        return await self.app(scope, receive, send)
