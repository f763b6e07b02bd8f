"""Who a connection is: a guest login, a signed join token, or a Django user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from rooms import protocol as p
from rooms.exceptions import ErrorCode, RoomError
from rooms.permissions import grants_for_role
from rooms.protocol import Role
from rooms.tokens import ensure_not_revoked, verify_token


@dataclass
class SessionIdentity:
    """The identity of an established session."""

    login: str
    role: str | None = None
    user_id: int | None = None
    room: str | None = None
    grants: frozenset[str] | None = None
    token_subject: str | None = None
    """The subject (login) of the join token this session opened with, if any."""
    resume_secret: str | None = None
    """The ``resume_secret`` the client gave in hello, to resume a participant that dropped."""

    def check_room(self, room: str) -> None:
        """A token bound to one room may join only that room (refused with ``invalid_token``)."""
        if self.room is not None and self.room != room:
            raise RoomError(ErrorCode.INVALID_TOKEN, f"your join token is for room '{self.room}', not '{room}'")

    def grants_for(self, role: str) -> frozenset[str]:
        """The grants in force in a room where this identity has ``role``."""
        return self.grants if self.grants is not None else grants_for_role(role)


def role_of_user(user: Any) -> str:
    """A logged-in user's room role: publisher unless an admin set a UserRole."""
    from rooms.models import UserRole

    role = UserRole.objects.filter(user_id=user.pk).values_list("role", flat=True).first()
    return role or Role.PUBLISHER


def authenticate_hello(command: p.Hello, user: Any = None) -> SessionIdentity:
    """Turn a hello into an identity, or raise ProtocolError (session FAILED)."""
    if command.token is not None:
        token = verify_token(command.token)
        ensure_not_revoked(token)
        return SessionIdentity(
            login=token.login,
            role=token.role,
            room=token.room,
            grants=token.grants,
            token_subject=token.login,
            resume_secret=command.resume_secret,
        )
    assert command.username is not None
    if user is not None and getattr(user, "is_authenticated", False):
        return SessionIdentity(
            login=command.username, role=role_of_user(user), user_id=user.pk, resume_secret=command.resume_secret
        )
    if not settings.ROOMS_GUEST_MODE:
        raise RoomError(ErrorCode.INVALID_TOKEN, "guest access is disabled: connect with a join token")
    return SessionIdentity(login=command.username, resume_secret=command.resume_secret)
