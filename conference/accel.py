"""Hand recording downloads to nginx (X-Accel-Redirect): Django decides who may have a file, nginx sends it."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from conference.middleware import Around, AroundMiddleware

logger = logging.getLogger(__name__)

# The headers of the original answer that still describe the file nginx will send.
KEPT_HEADERS = ("Content-Type", "Content-Disposition", "Cache-Control", "Last-Modified")


def offload(response: HttpResponseBase) -> HttpResponseBase:
    """An X-Accel-Redirect answer in place of a FileResponse of a file under RECORDINGS_DIR (else unchanged)."""
    prefix = settings.RECORDINGS_ACCEL_REDIRECT
    if not prefix or not isinstance(response, FileResponse) or response.status_code != 200:
        return response
    name = getattr(response.file_to_stream, "name", None)
    if not isinstance(name, str):
        return response
    path, root = Path(name).resolve(), Path(settings.RECORDINGS_DIR).resolve()
    if not path.is_relative_to(root):
        return response
    response.close()  # closes the file Django opened
    answer = HttpResponse(status=200)
    for header in KEPT_HEADERS:
        if header in response:
            answer[header] = response[header]
    answer["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + quote(path.relative_to(root).as_posix())
    logger.debug("recording %s handed to nginx", path.name)
    return answer


class AccelRedirectMiddleware(AroundMiddleware):
    """Replaces recording FileResponses with X-Accel-Redirect when RECORDINGS_ACCEL_REDIRECT is set."""

    def around(self, request: HttpRequest) -> Around:
        return offload((yield))
