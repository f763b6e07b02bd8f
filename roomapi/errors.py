"""The SDK's one error: a command the server refused, with its protocol code."""

from __future__ import annotations


class RoomApiError(Exception):
    """A refused command or failed session: ``code`` is the protocol's stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"RoomApiError({self.code!r}, {self.message!r})"
