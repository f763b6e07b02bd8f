"""Roles and grants: what each participant may do, checked for every command."""

from __future__ import annotations

from rooms.exceptions import ErrorCode, RoomError
from rooms.protocol import Grant, Role

GRANTS: tuple[str, ...] = tuple(Grant)

ROLE_GRANTS: dict[str, frozenset[str]] = {
    Role.MODERATOR: frozenset(Grant),
    Role.PUBLISHER: frozenset({Grant.CAN_PUBLISH, Grant.CAN_PLAY, Grant.CAN_CHAT, Grant.CAN_RECORD}),
    Role.VIEWER: frozenset({Grant.CAN_PLAY, Grant.CAN_CHAT}),
}


def grants_for_role(role: str) -> frozenset[str]:
    """The grants of a built-in role (none for an unknown one)."""
    return ROLE_GRANTS.get(role, frozenset())


def require_grant(grants: frozenset[str], grant: str) -> None:
    """Refuse with ``forbidden`` unless ``grant`` is held."""
    if grant not in grants:
        raise RoomError(ErrorCode.FORBIDDEN, f"your role does not allow this ({grant} is required)")
