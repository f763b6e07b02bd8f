"""Roles and grants: what each participant may do, checked for every command."""

from __future__ import annotations

from rooms.exceptions import ErrorCode, RoomError

GRANTS = ("can_publish", "can_play", "can_chat", "can_moderate", "can_record")

ROLE_GRANTS: dict[str, frozenset[str]] = {
    "moderator": frozenset(GRANTS),
    "publisher": frozenset({"can_publish", "can_play", "can_chat", "can_record"}),
    "viewer": frozenset({"can_play", "can_chat"}),
}


def grants_for_role(role: str) -> frozenset[str]:
    """The grants of a built-in role (none for an unknown one)."""
    return ROLE_GRANTS.get(role, frozenset())


def require_grant(grants: frozenset[str], grant: str) -> None:
    """Refuse with ``forbidden`` unless ``grant`` is held."""
    if grant not in grants:
        raise RoomError(ErrorCode.FORBIDDEN, f"your role does not allow this ({grant} is required)")
