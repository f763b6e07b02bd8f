"""Both SDKs export the same names as each other and as rooms/protocol.py: statuses, room events, error codes.

The Web SDK is read as text (its ``export const NAME = ...`` lines and frozen objects), the Python SDK
by import; the server's vocabulary comes from the StrEnums of rooms/protocol.py.  No server is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from roomapi import constants as py_sdk
from rooms import protocol as p
from rooms.protocol import ErrorCode, EventType, PlayStatus, Quality, SessionStatus, StreamStatus

ROOT = Path(__file__).resolve().parent.parent
JS_SDK = ROOT / "rooms" / "static" / "rooms" / "roomapi.js"
DOC = ROOT / "docs" / "protocol.md"

EXPORTED_OBJECTS = ("SESSION_STATUS", "ROOM_EVENT", "STREAM_STATUS", "QUALITY", "ERROR_CODE")
SDK_ONLY_SESSION_STATUSES = {"NEW", "PENDING", "RECONNECTING"}
SDK_ONLY_STREAM_STATUSES = {"NEW"}
SDK_ONLY_ERROR_CODES = {"DISCONNECTED": "disconnected", "TIMEOUT": "timeout",
                        "CONNECTION_ERROR": "connection_error", "BAD_URL": "bad_url",
                        "ICE_FAILED": "ice_failed"}
# Protocol events that answer one client (replies, session and media statuses) and so are no room event.
NOT_ROOM_EVENTS = {
    EventType.ESTABLISHED, EventType.FAILED, EventType.PONG, EventType.ACK, EventType.ERROR,
    EventType.ANSWER, EventType.STREAM_STATUS, EventType.PLAY_STATUS, EventType.LAYERS_WANTED, EventType.HISTORY,
}
ROOM_EVENT_OF = {EventType.ROOM_CLOSED: "CLOSED"}  # else the event's own name
SDK_ONLY_ROOM_EVENTS = {"FAILED", "RECONNECTING", "RECONNECTED"}

_FROZEN = re.compile(r"^export const ([A-Z_]+) = Object\.freeze\(\{(.*?)^\}\);", re.MULTILINE | re.DOTALL)
_SCALAR = re.compile(r"^export const ([A-Z_]+) = ([^;{]+);", re.MULTILINE)
_ENTRY = re.compile(r'^\s*([A-Z_]+):\s*"([^"]*)",?\s*$')


def js_exports() -> dict[str, object]:
    """The Web SDK's exported constants: frozen objects as dicts, scalars as their literal text."""
    text = JS_SDK.read_text(encoding="utf-8")
    exports: dict[str, object] = {name: value.strip() for name, value in _SCALAR.findall(text)}
    for name, body in _FROZEN.findall(text):
        entries: dict[str, str] = {}
        for line in body.splitlines():
            if not line.strip() or line.strip().startswith("//"):
                continue
            match = _ENTRY.match(line)
            assert match, f"{name}: cannot read the line {line!r} of roomapi.js"
            entries[match[1]] = match[2]
        exports[name] = entries
    return exports


def py_exports() -> dict[str, object]:
    """The Python SDK's exported constants, the same shapes."""
    exports: dict[str, object] = {"PROTOCOL_VERSION": str(py_sdk.PROTOCOL_VERSION)}
    for name in EXPORTED_OBJECTS:
        holder = getattr(py_sdk, name)
        exports[name] = {k: v for k, v in vars(holder).items() if not k.startswith("_") and isinstance(v, str)}
    return exports


@pytest.fixture(scope="module")
def js() -> dict[str, object]:
    return js_exports()


def _names(exports: dict[str, object], name: str) -> dict[str, str]:
    value = exports[name]
    assert isinstance(value, dict), f"{name} is not exported as an object"
    return value


def test_js_parser_reads_every_export(js: dict[str, object]) -> None:
    """The regex reader finds the version and the four objects, each non-empty (so the checks below bite)."""
    assert set(js) >= {"PROTOCOL_VERSION", *EXPORTED_OBJECTS}
    assert all(_names(js, name) for name in EXPORTED_OBJECTS)


def test_protocol_version_is_the_same_everywhere(js: dict[str, object]) -> None:
    """PROTOCOL_VERSION: the server's, the Python SDK's and the Web SDK's are one number."""
    assert js["PROTOCOL_VERSION"] == str(py_sdk.PROTOCOL_VERSION) == str(p.PROTOCOL_VERSION)


@pytest.mark.parametrize("name", EXPORTED_OBJECTS)
def test_both_sdks_export_the_same_names_and_values(js: dict[str, object], name: str) -> None:
    """Every exported object has the same keys and values in the Python and the Web SDK."""
    assert _names(js, name) == _names(py_exports(), name)


@pytest.mark.parametrize("name", ["SESSION_STATUS", "ROOM_EVENT", "STREAM_STATUS"])
def test_status_and_event_values_equal_their_names(name: str) -> None:
    """Statuses and room events are their own names (as in the reference SDK)."""
    assert all(key == value for key, value in _names(py_exports(), name).items())


def test_session_statuses_are_the_servers_plus_the_sdks_own() -> None:
    """SESSION_STATUS: the protocol's session statuses plus NEW, PENDING and RECONNECTING."""
    sdk = set(_names(py_exports(), "SESSION_STATUS"))
    assert sdk == {s.value for s in SessionStatus} | SDK_ONLY_SESSION_STATUSES


def test_stream_statuses_are_the_servers_plus_the_sdks_own() -> None:
    """STREAM_STATUS: the stream and playback statuses of the protocol plus NEW."""
    sdk = set(_names(py_exports(), "STREAM_STATUS"))
    assert sdk == {s.value for s in (*StreamStatus, *PlayStatus)} | SDK_ONLY_STREAM_STATUSES


def test_every_room_event_of_the_protocol_has_its_sdk_event() -> None:
    """ROOM_EVENT: one per protocol event that reaches a room, plus the SDK's FAILED, RECONNECTING and RECONNECTED."""
    expected = {ROOM_EVENT_OF.get(e, e.name) for e in EventType if e not in NOT_ROOM_EVENTS}
    assert set(_names(py_exports(), "ROOM_EVENT")) == expected | SDK_ONLY_ROOM_EVENTS


def test_qualities_are_the_servers() -> None:
    """QUALITY: the protocol's qualities by name and value."""
    assert _names(py_exports(), "QUALITY") == {q.name: q.value for q in Quality}


def test_error_codes_are_the_servers_plus_the_sdks_own() -> None:
    """ERROR_CODE: every ErrorCode by name and value, plus the SDK's five client-side codes."""
    assert _names(py_exports(), "ERROR_CODE") == {e.name: e.value for e in ErrorCode} | SDK_ONLY_ERROR_CODES


def test_protocol_doc_lists_the_sdk_names() -> None:
    """docs/protocol.md, "SDK names", names every exported status, event and SDK-only error code."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## SDK names"):]
    exports = py_exports()
    for name in ("SESSION_STATUS", "ROOM_EVENT", "STREAM_STATUS"):
        missing = [key for key in _names(exports, name) if f"`{key}`" not in section]
        assert not missing, f"{name} names missing from docs/protocol.md: {missing}"
    assert all(f"`{key}`" in section for key in SDK_ONLY_ERROR_CODES)
