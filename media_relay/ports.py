"""Bind the relay's ICE host candidates inside MEDIA_UDP_PORTS (e.g. "40000-40999").

aioice binds every host candidate to an ephemeral port.  A firewall-friendly
deployment needs a fixed range, so aioice's module-level ``asyncio`` is given a
proxy whose running loop (a :class:`RangeLoop`) binds UDP sockets within the
range; :func:`media_relay.aiortc_compat.install` applies it when a worker starts.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any


def parse_range(value: str) -> tuple[int, int] | None:
    """``"40000-40999"`` -> (40000, 40999); empty -> None."""
    if not value.strip():
        return None
    low_text, _, high_text = value.partition("-")
    low, high = int(low_text), int(high_text or low_text)
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"MEDIA_UDP_PORTS must be a range within 1024-65535, not {value!r}")
    return low, high


class RangeLoop:
    """The running loop, except that UDP binds to port 0 pick a port in the range."""

    def __init__(self, loop: asyncio.AbstractEventLoop, low: int, high: int) -> None:
        self._loop = loop
        self._low, self._high = low, high

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(self, factory: Any, local_addr: Any = None, **kwargs: Any) -> Any:
        if not local_addr or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(factory, local_addr=local_addr, **kwargs)
        size = self._high - self._low + 1
        start = random.randrange(size)
        for index in range(size):
            port = self._low + (start + index) % size
            try:
                return await self._loop.create_datagram_endpoint(factory, local_addr=(local_addr[0], port), **kwargs)
            except OSError:
                continue
        raise OSError(f"no free UDP port in {self._low}-{self._high} on {local_addr[0]}")
