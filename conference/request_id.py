"""A request id for every HTTP request: in each log record (LOG_FORMAT=json: ``request_id``) and the answer.

nginx passes its ``$request_id`` as ``X-Request-ID`` (deploy/rooms-locations.conf); without one (``make run``) a
random id is made.  The id is bound in the request's context (media_relay.logcontext), so everything logged while
Django handles the request carries it, and it is sent back in the ``X-Request-ID`` header.  WebSocket commands get
theirs from the command's ``rid`` (rooms/consumers.py).
"""

from __future__ import annotations

import re
import uuid

from django.http import HttpRequest

from conference.middleware import Around, AroundMiddleware
from media_relay import logcontext

HEADER = "X-Request-ID"
_VALID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_of(request: HttpRequest) -> str:
    """The proxy's id when it is a sane token, else a fresh one."""
    given = request.headers.get(HEADER, "")
    return given if _VALID.match(given) else uuid.uuid4().hex


class RequestIdMiddleware(AroundMiddleware):
    """Binds the request id for the request's log records and echoes it in the answer (sync and async)."""

    def around(self, request: HttpRequest) -> Around:
        rid = request_id_of(request)
        with logcontext.bound(request_id=rid):
            response = yield
        response[HEADER] = rid
        return response
