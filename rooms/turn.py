"""ICE servers for clients: STUN URLs and TURN URLs with short-lived credentials (the TURN REST scheme).

coturn with ``use-auth-secret`` and ``static-auth-secret=<TURN_SECRET>`` accepts the username
``<expiry>:<id>`` (expiry in Unix seconds) with the password ``base64(HMAC-SHA1(TURN_SECRET, username))``
until ``expiry``; nothing is stored on either side.  ``ice_servers(id)`` is the list a session hands its
client, in the shape of WebRTC's ``RTCIceServer`` dictionaries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import TypedDict

from django.conf import settings


class IceServerDict(TypedDict, total=False):
    """One entry of an ``iceServers`` list (RTCIceServer): ``urls``, and for TURN its credentials."""

    urls: list[str]
    username: str
    credential: str


@dataclass(frozen=True)
class TurnCredential:
    """A TURN REST credential."""

    username: str
    """``<expiry>:<id>``."""
    password: str
    """base64 HMAC-SHA1 of the username, keyed with the shared secret."""
    expires: int
    """Unix seconds after which the TURN server refuses it."""


_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")


def mint_credential(user_id: str, secret: str, ttl: int, now: float | None = None) -> TurnCredential:
    """A credential for ``user_id`` valid ``ttl`` seconds from ``now`` (default: the current time).

    ``user_id`` only labels the allocation in the TURN server's logs: characters other than letters,
    digits and ``._@-`` are replaced by ``_`` (coturn splits the username at the first ``:``).
    """
    if not secret:
        raise ValueError("a TURN credential needs a secret (TURN_SECRET)")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    expires = int(now if now is not None else time.time()) + ttl
    username = f"{expires}:{_UNSAFE.sub('_', user_id)[:64]}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), expires)


def ice_servers(user_id: str, now: float | None = None) -> list[IceServerDict]:
    """The ICE servers a client is given: ICE_STUN_URLS, then TURN_URLS with a fresh credential.

    Empty when neither is configured; TURN_URLS without TURN_SECRET are left out (coturn would refuse
    every credential).
    """
    servers: list[IceServerDict] = []
    if settings.ICE_STUN_URLS:
        servers.append({"urls": list(settings.ICE_STUN_URLS)})
    if settings.TURN_URLS and settings.TURN_SECRET:
        credential = mint_credential(user_id, settings.TURN_SECRET, settings.TURN_TTL, now)
        servers.append({"urls": list(settings.TURN_URLS), "username": credential.username,
                        "credential": credential.password})
    return servers
