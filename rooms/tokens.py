"""Signed join tokens (JWT, HS256) minted for external backends, and their verification."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from django.conf import settings

from rooms import protocol as p
from rooms.exceptions import ErrorCode, RoomError
from rooms.permissions import GRANTS, ROLE_GRANTS
from rooms.protocol import Role

AUDIENCE = "roomapi"


@dataclass(frozen=True)
class JoinToken:
    """The verified claims of a join token: who may join which room, with which role or grants."""

    login: str
    room: str
    role: str = Role.PUBLISHER
    grants: frozenset[str] | None = None
    """Explicit grants; None means the role's."""


def mint_token(
    room: str, login: str, *, role: str = Role.PUBLISHER, grants: list[str] | None = None,
    ttl_seconds: int | None = 3600, metadata: dict[str, Any] | None = None,
) -> str:
    """A token that lets ``login`` join ``room`` with a role or explicit grants.

    Both names are normalised like the protocol does (``join`` compares the
    normalised room name with the token's).  ``metadata`` rides in the token
    for the backend's own use; the server does not read it.
    """
    room = p.clean_name(room, what="room", max_length=p.MAX_NAME_LENGTH)
    login = p.clean_name(login, what="login", max_length=p.MAX_LOGIN_LENGTH)
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise RoomError(ErrorCode.INVALID_FIELD, "ttl_seconds must be positive")
    if role not in ROLE_GRANTS:
        raise RoomError(ErrorCode.INVALID_FIELD, f"role must be one of {', '.join(ROLE_GRANTS)}")
    if grants is not None and any(g not in GRANTS for g in grants):
        raise RoomError(ErrorCode.INVALID_FIELD, f"grants must be among {', '.join(GRANTS)}")
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"aud": AUDIENCE, "iat": now, "sub": login, "room": room, "role": str(role)}
    if grants is not None:
        claims["grants"] = sorted(set(grants))
    if ttl_seconds is not None:
        claims["exp"] = now + timedelta(seconds=ttl_seconds)
    if metadata:
        claims["metadata"] = metadata
    return jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256")


def verify_token(token: str) -> JoinToken:
    """Verify a token; tampered, expired or malformed tokens are refused with ``invalid_token``."""
    try:
        claims = jwt.decode(token, settings.SECRET_KEY, algorithms=["HS256"], audience=AUDIENCE)
    except jwt.ExpiredSignatureError:
        raise RoomError(ErrorCode.INVALID_TOKEN, "the join token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise RoomError(ErrorCode.INVALID_TOKEN, f"the join token is invalid ({exc.__class__.__name__})") from None
    login, room, role = claims.get("sub"), claims.get("room"), claims.get("role", Role.PUBLISHER)
    if not isinstance(login, str) or not isinstance(room, str) or role not in ROLE_GRANTS:
        raise RoomError(ErrorCode.INVALID_TOKEN, "the join token lacks a login, a room or a valid role")
    grants = claims.get("grants")
    if grants is not None and (not isinstance(grants, list) or any(g not in GRANTS for g in grants)):
        raise RoomError(ErrorCode.INVALID_TOKEN, "the join token carries unknown grants")
    return JoinToken(login=login, room=room, role=role, grants=frozenset(grants) if grants is not None else None)
