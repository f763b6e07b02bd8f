"""The room events a joining connection held while its join committed: which of them its ``state`` already says.

A connection registers for its room's events under the room's lock, before its join commits (rooms.services.join
``on_locked``), so that no event committed after the join is lost; it holds what arrives until its ``state`` is
sent.  Some of those events were committed before the join read the room (their delivery was still on its way):
the ``state`` shows them already, and they are dropped here rather than sent after it (a second ``joined`` for
someone listed, a ``left`` for someone never listed, a message already in the history).  Batched ``presence``
events pass as they are: clients skip their stale changes the same way (docs/protocol.md).
"""

from __future__ import annotations

import json
from typing import Any

from rooms import protocol as p


class Catchup:
    """What a joiner knows from its ``state``, kept up to date by the held events it is sent."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.known: dict[str, dict[str, Any]] = {x["login"]: x for x in state.get("participants", ())}
        self.messages = {m["id"] for m in state.get("history", ())}

    def fresh(self, text: str) -> bool:
        """True when the held event (JSON text) tells the joiner something its state and the events sent since
        did not."""
        event = json.loads(text)
        kind = event.get("type")
        if kind in (p.EventType.JOINED, p.EventType.PARTICIPANT_UPDATED):
            data = event["participant"]
            if self.known.get(data["login"]) == data:
                return False
            self.known[data["login"]] = data
        elif kind == p.EventType.LEFT:
            return self.known.pop(event["participant"]["login"], None) is not None
        elif kind == p.EventType.MESSAGE:
            return event["message"]["id"] not in self.messages
        elif kind == p.EventType.PUBLISHED:
            owner = self.known.get(event["participant"]["login"])
            return owner is None or event["stream"] not in owner.get("streams", ())
        return True
