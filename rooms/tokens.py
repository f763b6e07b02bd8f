"""Signed join tokens (JWT, HS256) minted for external backends, and their verification.

Every token expires (within JOIN_TOKEN_MAX_TTL) and carries a ``jti``; a revoked
``jti`` (rooms.models.RevokedToken, see ``revoke`` and ``ensure_not_revoked``) is refused at hello.

With REDIS_URL, each process keeps the set of revoked ``jti`` s in memory with the *revocation version* it read
from Redis (:data:`VERSION_KEY`) before loading it; a hello compares that version with Redis's (one ``GET``, not
a database query) and reloads the set when it moved.  Every change of the revocations (``revoke``, a row deleted)
writes a new random version after its row is written and again after it commits, so a hello that starts after
``revoke`` returned sees the new version and the committed row.  A version lost with Redis (flushed, restarted)
differs from every cached one.  Without Redis, or when Redis does not answer, the hello reads the database.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete

from rooms import protocol as p
from rooms.exceptions import ErrorCode, RoomError
from rooms.permissions import GRANTS, ROLE_GRANTS
from rooms.protocol import Role
from rooms.redis_client import sync_redis

AUDIENCE = "roomapi"
#: The longest ``jti`` accepted (ours are 32 hex digits).
MAX_JTI_LENGTH = 64

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JoinToken:
    """The verified claims of a join token: who may join which room, with which role or grants."""

    login: str
    room: str
    role: str = Role.PUBLISHER
    grants: frozenset[str] | None = None
    """Explicit grants; None means the role's."""
    jti: str = ""
    """The token's unique id (what revocation names)."""
    expires_at: datetime | None = None


def max_ttl_seconds() -> int:
    """The longest lifetime a token may have (JOIN_TOKEN_MAX_TTL); a token asked for without one gets it."""
    return max(int(settings.JOIN_TOKEN_MAX_TTL), 1)


def token_lifetime(ttl_seconds: int | None) -> int:
    """The lifetime of a token asked for with ``ttl_seconds`` (None: the maximum); out of range: invalid_field."""
    if ttl_seconds is None:
        return max_ttl_seconds()
    if ttl_seconds <= 0:
        raise RoomError(ErrorCode.INVALID_FIELD, "ttl_seconds must be positive")
    if ttl_seconds > max_ttl_seconds():
        raise RoomError(
            ErrorCode.INVALID_FIELD, f"ttl_seconds must be at most {max_ttl_seconds()} (JOIN_TOKEN_MAX_TTL)"
        )
    return ttl_seconds


def mint_token(
    room: str, login: str, *, role: str = Role.PUBLISHER, grants: list[str] | None = None,
    ttl_seconds: int | None = 3600, metadata: dict[str, Any] | None = None,
) -> str:
    """A token that lets ``login`` join ``room`` with a role or explicit grants, for ``ttl_seconds``.

    Both names are normalised like the protocol does (``join`` compares the
    normalised room name with the token's).  ``metadata`` rides in the token
    for the backend's own use; the server does not read it.  ``ttl_seconds`` None means
    JOIN_TOKEN_MAX_TTL: every token expires.
    """
    room = p.clean_name(room, what="room", max_length=p.MAX_NAME_LENGTH)
    login = p.clean_name(login, what="login", max_length=p.MAX_LOGIN_LENGTH)
    lifetime = token_lifetime(ttl_seconds)
    if role not in ROLE_GRANTS:
        raise RoomError(ErrorCode.INVALID_FIELD, f"role must be one of {', '.join(ROLE_GRANTS)}")
    if grants is not None and any(g not in GRANTS for g in grants):
        raise RoomError(ErrorCode.INVALID_FIELD, f"grants must be among {', '.join(GRANTS)}")
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "aud": AUDIENCE, "iat": now, "exp": now + timedelta(seconds=lifetime), "jti": uuid.uuid4().hex,
        "sub": login, "room": room, "role": str(role),
    }
    if grants is not None:
        claims["grants"] = sorted(set(grants))
    if metadata:
        claims["metadata"] = metadata
    return jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256")


def verify_token(token: str) -> JoinToken:
    """Verify a token; tampered, expired, malformed tokens or ones without ``exp`` or ``jti`` are refused
    with ``invalid_token`` (revocation is checked by ``ensure_not_revoked``, which needs the database)."""
    try:
        claims = jwt.decode(
            token, settings.SECRET_KEY, algorithms=["HS256"], audience=AUDIENCE, options={"require": ["exp", "jti"]}
        )
    except jwt.ExpiredSignatureError:
        raise RoomError(ErrorCode.INVALID_TOKEN, "the join token has expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise RoomError(ErrorCode.INVALID_TOKEN, f"the join token lacks the '{exc.claim}' claim") from None
    except jwt.InvalidTokenError as exc:
        raise RoomError(ErrorCode.INVALID_TOKEN, f"the join token is invalid ({exc.__class__.__name__})") from None
    login, room, role = claims.get("sub"), claims.get("room"), claims.get("role", Role.PUBLISHER)
    if not isinstance(login, str) or not isinstance(room, str) or role not in ROLE_GRANTS:
        raise RoomError(ErrorCode.INVALID_TOKEN, "the join token lacks a login, a room or a valid role")
    grants = claims.get("grants")
    if grants is not None and (not isinstance(grants, list) or any(g not in GRANTS for g in grants)):
        raise RoomError(ErrorCode.INVALID_TOKEN, "the join token carries unknown grants")
    jti = claims["jti"]
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise RoomError(ErrorCode.INVALID_TOKEN, "the join token's jti is not a short string")
    return JoinToken(
        login=login, room=room, role=role, grants=frozenset(grants) if grants is not None else None, jti=jti,
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
    )


VERSION_KEY = "rooms:revocations:version"
"""Redis key of the revocation version: a new random value at every change of the revoked tokens."""


class _Revocations:
    """This process's copy of the revoked ``jti`` s, valid while Redis holds the version it was loaded at."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.url = ""
        self.version: bytes | None = None
        self.jtis: frozenset[str] | None = None

    def redis(self) -> Any:
        if self.url != settings.REDIS_URL:  # another Redis (tests change it): nothing cached holds
            self.url = settings.REDIS_URL
            self.jtis = None
        return sync_redis()

    def revoked(self, jti: str) -> bool | None:
        """Whether ``jti`` is revoked, from the cached set (reloaded if the version moved); None without Redis."""
        from rooms.models import RevokedToken

        if not settings.REDIS_URL:
            return None
        with self.lock:
            try:
                version = self.redis().get(VERSION_KEY)
            except Exception:
                logger.warning("revocation version unreadable: the database answers", exc_info=True)
                return None
            if self.jtis is None or version != self.version:
                # The version first, then the rows: a change after this read moves the version again.
                self.jtis = frozenset(RevokedToken.objects.values_list("jti", flat=True))
                self.version = version
            return jti in self.jtis

    def bump(self) -> None:
        """A new version: every process reloads at its next hello (raises if Redis does not take it)."""
        if settings.REDIS_URL:
            self.redis().set(VERSION_KEY, uuid.uuid4().hex)


_revocations = _Revocations()


def ensure_not_revoked(token: JoinToken) -> None:
    """Refuse a revoked token with ``token_revoked`` (synchronous: reads Redis, and the database when the
    revocations changed or without Redis)."""
    from rooms.models import RevokedToken

    revoked = _revocations.revoked(token.jti)
    if revoked is None:
        revoked = RevokedToken.objects.filter(jti=token.jti).exists()
    if revoked:
        raise RoomError(ErrorCode.TOKEN_REVOKED, "the join token has been revoked")


def revocations_changed() -> None:
    """The revoked tokens changed: a new version now (a hello on this connection sees the row already) and once
    the change commits (for every other connection)."""
    _revocations.bump()
    transaction.on_commit(_revocations.bump)


def _row_deleted(**kwargs: Any) -> None:
    revocations_changed()


post_delete.connect(_row_deleted, sender="rooms.RevokedToken", dispatch_uid="rooms.tokens.revocations")


def revoke(jti: str, *, room: str = "", reason: str = "") -> bool:
    """Revoke the token ``jti`` until it would have expired anyway; False if it was revoked already."""
    from rooms.models import RevokedToken

    if not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise RoomError(ErrorCode.INVALID_FIELD, "jti must be 1..64 characters")
    # The token's own expiry is not stored: the row is kept as long as any token can live.
    _, created = RevokedToken.objects.get_or_create(
        jti=jti,
        defaults={
            "room": room[: p.MAX_NAME_LENGTH], "reason": reason[:200],
            "expires_at": datetime.now(UTC) + timedelta(seconds=max_ttl_seconds()),
        },
    )
    revocations_changed()  # also when it existed: a retry after a failed version write writes it
    if created:
        logger.info("join token %s of room %r revoked", jti, room)
    return created
