"""Log records with their room, participant and request id: context variables, a filter and two formatters.

The consumer, the services and the media workers set the context with :func:`bind` (context variables follow
each asyncio task and ``sync_to_async`` call, so concurrent connections never mix); :class:`ContextFilter`
copies it onto every record.  LOG_FORMAT=json picks :class:`JsonFormatter` (python-json-logger): one JSON
object a line with ``time``, ``level``, ``logger``, ``message`` and ``room`` / ``participant`` (name, login),
``room_id`` / ``participant_id`` and ``request_id`` when known.  It lives in media_relay, the lowest layer, so
every layer may bind context.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

#: The fields: the room's name and the participant's login (daphne), their database ids (daphne and media
#: workers, which know only ids), the request id of the command being handled.
_VARS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"log_{name}", default=None)
    for name in ("room", "participant", "room_id", "participant_id", "request_id")
}
FIELDS = tuple(_VARS)


def bind(**values: Any) -> None:
    """Set context fields (room, participant, room_id, participant_id, request_id) for the rest of the current
    task; None clears one."""
    for name, value in values.items():
        _VARS[name].set(None if value is None else str(value))


@contextlib.contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Set context fields within a ``with`` block only."""
    tokens = [(_VARS[name], _VARS[name].set(None if value is None else str(value))) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    """The context fields set now."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Copies the bound room, participant and request id onto each record (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; never drops a record."""
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class TextFormatter(logging.Formatter):
    """``time level logger: message [room=… participant=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The line, with the known context at its end."""
        line = super().format(record)
        context = " ".join(f"{name}={value}" for name in FIELDS if (value := getattr(record, name, None)) is not None)
        return f"{line} [{context}]" if context else line


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, room/participant/request_id when
    known, exc_info when there is one, and any ``extra`` fields."""

    def __init__(self) -> None:
        super().__init__(json_ensure_ascii=False)

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        """Fill the standard fields; drop context fields that are unknown."""
        super().add_fields(log_record, record, message_dict)
        log_record["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_record["level"] = record.levelname
        log_record["logger"] = record.name
        log_record["message"] = record.getMessage()
        for name in FIELDS:
            if log_record.get(name) is None:
                log_record.pop(name, None)
