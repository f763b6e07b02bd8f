"""The browser SDK checks the size limits the server announces before it sends (issue 11, finding 9).

A message over ``max_message_bytes`` is refused by roomapi.js itself with
``message_too_large``: nothing goes over the wire, the session stays ESTABLISHED
and the room usable, and the next message of a normal size reaches the server.
A frame past daphne's limit would otherwise close the connection (1009).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.conftest import RoomPage
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db

# Runs in the page: connect, join, send one message one byte over the limit (multi-byte characters, so the
# check must count UTF-8 bytes, not characters), then a normal one; report what happened.
OVERSIZED_JS = """
async ({ws}) => {
  const api = await import("/static/rooms/roomapi.js");
  const until = (emitter, ok, bad) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no " + ok + " within 20 s")), 20000);
    emitter.on(ok, (value) => { clearTimeout(timer); resolve(value); });
    emitter.on(bad, () => { clearTimeout(timer); reject(new Error(bad)); });
  });
  const connection = api.connect({urlServer: ws, username: "sizer"});
  await until(connection, api.SESSION_STATUS.ESTABLISHED, api.SESSION_STATUS.FAILED);
  const room = connection.join({name: "sizes"});
  await until(room, api.ROOM_EVENT.STATE, api.ROOM_EVENT.FAILED);
  const limit = connection._limits.max_message_bytes;
  const sentFrames = [];
  const send = connection._ws.send.bind(connection._ws);
  connection._ws.send = (frame) => { sentFrames.push(frame.length); send(frame); };
  let refused = null;
  try {
    await room.sendMessage("\u00e9".repeat(Math.floor(limit / 2)) + "x");
  } catch (err) {
    refused = err.code;
  }
  const framesAfterRefusal = sentFrames.length;
  const echoed = await room.sendMessage("still here");
  return {limit, refused, framesAfterRefusal, status: connection.status(), echoed: echoed.text};
}
"""


def test_an_oversized_message_is_refused_locally_and_the_session_survives(
    open_page: Callable[..., RoomPage], server: DaphneServer
) -> None:
    """sendMessage one UTF-8 byte over max_message_bytes rejects with message_too_large without sending a frame;
    the session stays ESTABLISHED and the next message is sent and acknowledged."""
    page = open_page("/")
    result = page.page.evaluate(OVERSIZED_JS, {"ws": server.ws_url})
    assert result["limit"] > 0, result
    assert result["refused"] == "message_too_large", result
    assert result["framesAfterRefusal"] == 0, result
    assert result["status"] == "ESTABLISHED", result
    assert result["echoed"] == "still here", result
