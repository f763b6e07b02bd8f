"""The WHIP and WHEP endpoints in the OpenAPI schema: a drf-spectacular post-processing hook.

The endpoints are plain async Django views (rooms.whip), which drf-spectacular does not see; this hook adds
their operations to the generated schema (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]).
"""

from __future__ import annotations

from typing import Any

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
TAG = "WHIP / WHEP"
ERROR_REF = {"$ref": "#/components/schemas/WhipError"}

_REFUSALS = {
    "401": "No valid join token (or guests are not allowed, or a guest gave no login)",
    "403": "The token lacks can_publish / can_play or is for another room or login; the room is locked or full",
    "404": "No such room, stream or session",
    "409": "The login is already in the room",
    "415": "Wrong Content-Type",
    "422": "The SDP (or the fragment) is not acceptable, or an ICE restart was asked for",
    "429": "A cap: connections per address, pending or playing peer connections",
    "503": "No media worker can take the session now",
}


def _with_parameters(item: dict[str, Any], parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """Every operation of a path item gets the path's parameters (drf-spectacular wants no path-level ones)."""
    for operation in item.values():
        operation["parameters"] = [*parameters, *operation.get("parameters", [])]
    return item


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def _refusals(*codes: str) -> dict[str, Any]:
    return {
        code: {"description": _REFUSALS[code], "content": {"application/json": {"schema": ERROR_REF}}}
        for code in codes
    }


def _cors_preflight(summary: str) -> dict[str, Any]:
    return {
        "operationId": summary.replace(" ", "_").lower(),
        "summary": summary,
        "tags": [TAG],
        "security": [{}],
        "responses": {"204": {"description": "CORS pre-flight; Link headers carry the ICE servers (rel=ice-server)"}},
    }


def _create(operation_id: str, summary: str, description: str, refusals: tuple[str, ...]) -> dict[str, Any]:
    headers = {
        "Location": {"schema": {"type": "string"}, "description": "The session resource (PATCH, DELETE)"},
        "ETag": {"schema": {"type": "string"}, "description": "The session's entity tag (If-Match of PATCH)"},
        "Link": {"schema": {"type": "string"}, "description": "ICE servers (rel=ice-server)"},
    }
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": [TAG],
        "security": [{"WhipBearer": []}, {}],
        "parameters": [
            {"name": "login", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "A guest's login (guest mode only; with a token it must be the token's subject)"},
        ],
        "requestBody": {"required": True, "content": {SDP: {"schema": {"type": "string"}}}},
        "responses": {
            "201": {
                "description": "The SDP answer", "headers": headers, "content": {SDP: {"schema": {"type": "string"}}}
            },
            **_refusals(*refusals),
        },
    }


def _session(kind: str) -> dict[str, Any]:
    return {
        "patch": {
            "operationId": f"{kind}_session_trickle",
            "summary": f"Trickle ICE candidates to a {kind.upper()} session",
            "tags": [TAG],
            "security": [{}],
            "parameters": [{"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                            "description": "The session's ETag; '*' (an ICE restart) is refused with 422"}],
            "requestBody": {"required": True, "content": {SDPFRAG: {"schema": {"type": "string"}}}},
            "responses": {
                "204": {"description": "The candidates were handed to the relay"},
                "412": {"description": "If-Match names another ETag",
                        "content": {"application/json": {"schema": ERROR_REF}}},
                **_refusals("404", "415", "422", "429"),
            },
        },
        "delete": {
            "operationId": f"{kind}_session_delete",
            "summary": f"End a {kind.upper()} session",
            "tags": [TAG],
            "security": [{}],
            "responses": {"200": {"description": "The session ended"}, **_refusals("404")},
        },
        "options": _cors_preflight(f"{kind} session preflight"),
    }


def add_whip_whep(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Add the WHIP and WHEP operations (docs/whip-whep.md) to the generated schema."""
    room = _path_parameter("room", "The room's name")
    target = _path_parameter("target", "A stream id, or the login of a participant whose stream to play")
    session = _path_parameter("session", "The session id from the Location header")
    paths = result.setdefault("paths", {})
    paths["/whip/{room}"] = _with_parameters({
        "post": _create(
            "whip_publish", "Publish into a room (WHIP, RFC 9725)",
            "Joins the room as the token's subject (or the guest ?login=) and publishes the offer as its camera"
            " stream. The publisher leaves when the session is deleted or its media stops.",
            ("401", "403", "409", "415", "422", "429", "503"),
        ),
        "options": _cors_preflight("whip preflight"),
    }, [room])
    paths["/whip/{room}/{session}"] = _with_parameters(_session("whip"), [room, session])
    paths["/whep/{room}/{target}"] = _with_parameters({
        "post": _create(
            "whep_play", "Play a stream of a room (WHEP)",
            "Plays one publishing stream of the room (by id, or a participant's login: its camera first)."
            " The viewer is not shown in the room.",
            ("401", "403", "404", "415", "422", "429", "503"),
        ),
        "options": _cors_preflight("whep preflight"),
    }, [room, target])
    paths["/whep/{room}/{target}/{session}"] = _with_parameters(_session("whep"), [room, target, session])
    components = result.setdefault("components", {})
    components.setdefault("securitySchemes", {})["WhipBearer"] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A join token (POST /api/tokens/ or rooms.tokens.mint_token) for the room",
    }
    components.setdefault("schemas", {})["WhipError"] = {
        "type": "object",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "required": ["code", "message"],
    }
    return result
