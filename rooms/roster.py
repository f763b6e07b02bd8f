"""What a join reads of its room: the room row locked, its audience count and present set in the same query, and
the listed participants' fixed fields cached per process.

A joiner's ``state`` lists everyone present but viewers.  Reading those N rows through the ORM for every join
(model queries compiled, timestamps parsed) was most of a join's cost in a big room.  Here the room's lock query
(one round trip, raw SQL for both backends) also returns the listed participants as one text value of
``pk:state`` pairs built by the database, the audience count, the joiner's own present participant if any, and
whether the room has live streams or messages at all.  This process keeps what never changes of a participant
(login, role, joined_at) by primary key, per room: rows are read only for participants it has not seen yet
(joins served by another process, a room new to it), and a join adds its own participant (:func:`remember`).
"""

from __future__ import annotations

import functools
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from rooms import protocol as p
from rooms.models import Message, Participant, Room, Stream
from rooms.presenters import iso, participant_wire
from rooms.protocol import Role, StreamStatus

CACHED_ROOMS = 512
"""Rooms whose participants this process remembers (least recently joined dropped first)."""


@dataclass(frozen=True)
class Entry:
    """What never changes of a participant: its login, role and join time (also as its wire text)."""

    login: str
    role: str
    joined_at: datetime
    joined_iso: str | None
    wire: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict, compare=False)
    """By participant state: its ``state.participants`` entry without streams, and that entry's JSON text."""


ROSTER_MARK = f"roster-{secrets.token_hex(16)}"
"""Stands for ``state.participants`` while the rest of a join's state is encoded (:func:`encode_state`)."""


@dataclass
class Roster:
    """``state.participants``: the entries, and their JSON text, put together from each one's cached text."""

    entries: list[dict[str, Any]]
    text: str


@dataclass
class RoomToJoin:
    """A locked active room and what a join needs to know of it."""

    room: Room
    viewers: int
    listed: list[tuple[int, Entry, str]]
    """(pk, fixed fields, state) of every present participant but viewers, in join order."""
    mine: int | None
    """The present participant (viewer or not) with the joiner's login, if any."""
    has_live_streams: bool
    has_messages: bool


_cache: OrderedDict[tuple[int, datetime], dict[int, Entry]] = OrderedDict()
"""By room (primary key and creation time: a primary key that SQLite gives again after a rollback is another
room), the fixed fields of the participants seen, by primary key."""
_cache_lock = threading.Lock()


def _sql() -> str:
    q = connection.ops.quote_name
    room, part = q(Room._meta.db_table), q(Participant._meta.db_table)
    stream, message = q(Stream._meta.db_table), q(Message._meta.db_table)
    columns = ", ".join(f"r.{q(str(f.column))}" for f in Room._meta.concrete_fields)
    pairs = "CAST(x.id AS TEXT) || ':' || x.state"
    aggregate = f"STRING_AGG({pairs}, ',')" if connection.vendor == "postgresql" else f"GROUP_CONCAT({pairs}, ',')"
    present = "x.room_id = r.id AND x.state IN (%s, %s)"
    lock = " FOR NO KEY UPDATE OF r" if connection.features.has_select_for_no_key_update else ""
    return (
        f"SELECT {columns},"
        f" (SELECT COUNT(*) FROM {part} x WHERE {present} AND x.role = %s) AS roster_viewers,"
        f" (SELECT {aggregate} FROM {part} x WHERE {present} AND x.role <> %s) AS roster_listed,"
        f" (SELECT x.id FROM {part} x WHERE {present} AND x.login = %s LIMIT 1) AS roster_mine,"
        f" EXISTS (SELECT 1 FROM {stream} s INNER JOIN {part} x ON s.participant_id = x.id"
        f" WHERE x.room_id = r.id AND s.status = %s) AS roster_live,"
        f" EXISTS (SELECT 1 FROM {message} m WHERE m.room_id = r.id) AS roster_chat"
        f" FROM {room} r WHERE r.name = %s AND r.finalized_at IS NULL{lock}"
    )


def lock_for_join(name: str, login: str) -> RoomToJoin | None:
    """The active room ``name`` locked (FOR NO KEY UPDATE: the lock order of rooms.services), or None."""
    states = list(p.PRESENT_STATES)
    params = [*states, Role.VIEWER, *states, Role.VIEWER, *states, login, StreamStatus.PUBLISHING, name]
    with connection.cursor() as cursor:
        cursor.execute(_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    fields = _room_fields()
    values = list(row[: len(fields)])
    for i, (_, column, converters) in enumerate(fields):
        for convert in converters:
            values[i] = convert(values[i], column, connection)
    room = Room.from_db(connection.alias, [f.attname for f, _, _ in fields], values)
    extra = dict(zip(("roster_viewers", "roster_listed", "roster_mine", "roster_live", "roster_chat"),
                     row[len(fields):], strict=True))
    present: dict[int, str] = {}
    if extra["roster_listed"]:
        for pair in extra["roster_listed"].split(","):
            pk, _, state = pair.partition(":")
            present[int(pk)] = state
    entries = _entries((room.pk, room.created_at), present)
    listed = sorted(
        ((pk, entries[pk], state) for pk, state in present.items()), key=lambda row: (row[1].joined_at, row[0])
    )
    return RoomToJoin(
        room=room,
        viewers=int(extra["roster_viewers"] or 0),
        listed=listed,
        mine=extra["roster_mine"],
        has_live_streams=bool(extra["roster_live"]),
        has_messages=bool(extra["roster_chat"]),
    )


def _room_fields() -> list[tuple[Any, Any, list[Any]]]:
    """The room's columns as :func:`_sql` selects them, each with the converters Django applies to it (SQLite's
    timestamps are text, for one): what ``Room.objects.raw`` worked out again for every join."""
    key = connection.vendor
    found = _converters.get(key)
    if found is None:
        columns = [(f, f.get_col(Room._meta.db_table)) for f in Room._meta.concrete_fields]
        found = _converters[key] = [
            (f, col, [*connection.ops.get_db_converters(col), *f.get_db_converters(connection)]) for f, col in columns
        ]
    return found


_converters: dict[str, list[tuple[Any, Any, list[Any]]]] = {}


def _entries(room: tuple[int, datetime], present: dict[int, str]) -> dict[int, Entry]:
    """The fixed fields of the ``present`` participants: from the cache, the unknown ones read (one query)."""
    with _cache_lock:
        known = _cache.pop(room, None) or {}
        if len(known) > len(present) or any(pk not in present for pk in known):
            known = {pk: entry for pk, entry in known.items() if pk in present}
        missing = [pk for pk in present if pk not in known]
    if missing:
        rows = Participant.objects.filter(pk__in=missing).values_list("pk", "login", "role", "joined_at")
        for pk, login, role, joined_at in rows:
            known[pk] = Entry(login, role, joined_at, iso(joined_at))
    with _cache_lock:
        _cache[room] = known
        while len(_cache) > CACHED_ROOMS:
            _cache.popitem(last=False)
    return known


def insert(participant: Participant) -> None:
    """Save a new participant with one ``INSERT ... RETURNING`` written once per process: what the ORM's
    ``create`` sends, without compiling it every join (no model signal listens to participants)."""
    if not connection.features.can_return_columns_from_insert:  # pragma: no cover - PostgreSQL and SQLite can
        participant.save(force_insert=True)
        return
    fields = _insert_fields()
    values = [f.get_db_prep_save(f.pre_save(participant, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(connection.vendor), values)
        participant.pk = cursor.fetchone()[0]
    participant._state.adding = False
    participant._state.db = connection.alias


def _insert_fields() -> list[Any]:
    return [f for f in Participant._meta.concrete_fields if not f.primary_key]


@functools.cache
def _insert_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    columns = ", ".join(q(str(f.column)) for f in _insert_fields())
    marks = ", ".join(["%s"] * len(_insert_fields()))
    pk = q(str(Participant._meta.pk.column)) if Participant._meta.pk is not None else "id"
    return f"INSERT INTO {q(Participant._meta.db_table)} ({columns}) VALUES ({marks}) RETURNING {pk}"


def remember(participant: Participant) -> None:
    """A join added ``participant``: once its transaction commits, the next join here need not read it (a row
    that never commits is never remembered: SQLite may give its primary key to another)."""
    if participant.role == Role.VIEWER:
        return
    room = (participant.room.pk, participant.room.created_at)
    entry = Entry(participant.login, participant.role, participant.joined_at, iso(participant.joined_at))

    def committed() -> None:
        with _cache_lock:
            known = _cache.get(room)
            if known is not None:
                known[participant.pk] = entry

    transaction.on_commit(committed)


def listed(rows: list[tuple[int, Entry, str]], streams: dict[int, list[Any]], skip: int) -> Roster:
    """``state.participants``: every listed participant but ``skip``, with its live streams.  The entry and the
    JSON text of a participant without streams are built once per state it is in, and kept with its entry (a
    join in a room of N lists N-1 others: built and encoded every time, they were most of its CPU)."""
    entries: list[dict[str, Any]] = []
    texts: list[str] = []
    for pk, entry, state in rows:
        if pk == skip:
            continue
        live = streams.get(pk)
        if live:
            data = participant_wire(entry.login, state, entry.role, entry.joined_iso, live)
            entries.append(data)
            texts.append(p.encode(data))
            continue
        cached = entry.wire.get(state)
        if cached is None:
            data = participant_wire(entry.login, state, entry.role, entry.joined_iso, [])
            cached = entry.wire[state] = (data, p.encode(data))
        entries.append(cached[0])
        texts.append(cached[1])
    return Roster(entries, "[" + ",".join(texts) + "]")


def encode_state(event: dict[str, Any], roster: Roster | None) -> str:
    """A join's ``state`` event as JSON text, its participants spliced in as the text :func:`listed` made."""
    if roster is None or event.get("participants") is not roster.entries:
        return p.encode(event)
    text = p.encode({**event, "participants": ROSTER_MARK})
    return text.replace(f'"{ROSTER_MARK}"', roster.text, 1)
