"""Room rules, free of any transport: admission, presence, messages, streams.

Every function here is synchronous, runs in one database transaction and
returns an outcome holding the :class:`Delivery` list that the caller hands to
the channel layer (rooms.dispatch) after the transaction commits.  Tests call
these functions directly, without sockets.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Func, IntegerField, Q
from django.utils import timezone

from rooms import protocol as p
from rooms import roster, signals
from rooms.exceptions import ErrorCode, RoomError
from rooms.models import Message, Participant, Room, Stream
from rooms.permissions import grants_for_role, require_grant
from rooms.presenters import message_dict, participant_dict, room_dict, stream_dict
from rooms.protocol import EventType, Grant, ParticipantState, Role, StreamStatus

logger = logging.getLogger(__name__)

PRESENT = p.PRESENT_STATES
LIVE = p.LIVE_STREAM_STATUSES


@dataclass(frozen=True)
class Delivery:
    """One event to send: to a room group (minus ``exclude``) and/or to channels."""

    event: dict[str, Any]
    group: str | None = None
    channels: tuple[str, ...] = ()
    exclude: str | None = None
    coalesce: bool = False
    """A presence event of a big room (ROOM_PRESENCE_BATCH_THRESHOLD): the sender may batch it with the room's
    other presence events of the next ROOM_PRESENCE_BATCH_WINDOW seconds into one ``presence`` event."""


@dataclass
class Outcome:
    """What a service call changed and whom to tell."""

    deliveries: list[Delivery] = field(default_factory=list)
    finalized_room_ids: list[int] = field(default_factory=list)
    closed_stream_ids: list[str] = field(default_factory=list)
    muted_streams: list[tuple[str, bool, bool]] = field(default_factory=list)
    """(stream public id, audio_muted, video_muted) of every stream whose mute flags changed."""


@dataclass
class JoinOutcome(Outcome):
    """The joiner's STATE plus the events for the others."""

    participant_id: int = 0
    room_id: int = 0
    group: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    listed: roster.Roster | None = None
    """``state["participants"]`` and its JSON text (rooms.roster.encode_state)."""
    resumed: bool = False
    superseded_channel: str = ""
    """The channel of a connection whose participant this join took over (its media must go); else empty."""


@dataclass
class DropOutcome(Outcome):
    """A participant that dropped; ``disconnected_at`` keys its expiry."""

    participant_id: int = 0
    disconnected_at: datetime | None = None


def _event(kind: EventType, **fields: Any) -> dict[str, Any]:
    return p.Event(kind, fields).to_dict()


def _on_commit(signal: Any, **kwargs: Any) -> None:
    transaction.on_commit(lambda: signal.send(sender=None, **kwargs))


# --- Presence and the audience ---------------------------------------------------
#
# Viewers (Role.VIEWER) are a room's audience: counted, never listed nor announced one by one.  Presence events
# (joined, left, participant_updated and the audience count) of rooms of ROOM_PRESENCE_BATCH_THRESHOLD present
# participants or more are marked ``coalesce``: rooms.delivery batches them into ``presence`` events.


def is_audience(participant: Participant) -> bool:
    """A viewer: counted in ``viewers``, not listed in ``state`` nor announced by ``joined``/``left``."""
    return participant.role == Role.VIEWER


@dataclass(frozen=True)
class Headcount:
    """How many are present in a room, and how many of them are viewers."""

    present: int
    viewers: int

    @property
    def big(self) -> bool:
        """Big enough for batched presence."""
        threshold = settings.ROOM_PRESENCE_BATCH_THRESHOLD
        return bool(threshold) and self.present >= threshold


def headcount(room: Room) -> Headcount:
    """The room's present participants and viewers (one query)."""
    counts = room.participants.filter(state__in=PRESENT).aggregate(
        present=Count("pk"), viewers=Count("pk", filter=Q(role=Role.VIEWER))
    )
    return Headcount(counts["present"] or 0, counts["viewers"] or 0)


def _presence(
    outcome: Outcome, room: Room, participant: Participant, kind: EventType, data: dict[str, Any],
    exclude: str | None, count: Headcount | None = None,
) -> None:
    """Tell the room about ``participant``: its event, or for a viewer the new audience count."""
    count = count or headcount(room)
    if is_audience(participant):
        event = _event(EventType.PRESENCE, changes=[], viewers=count.viewers)
        outcome.deliveries.append(Delivery(event, group=room.group_name, coalesce=count.big))
        return
    event = _event(kind, participant=data)
    outcome.deliveries.append(Delivery(event, group=room.group_name, exclude=exclude, coalesce=count.big))


# --- Admission ----------------------------------------------------------------


# Lock order, everywhere: the room first, then its participants, then streams; always FOR NO KEY UPDATE
# (PostgreSQL), which does not conflict with the key-share locks that inserting a Message or a Stream takes
# on the rows they refer to.  One order means no deadlock between join, leave, drop, kick and messages.


def _lock(queryset: Any) -> Any:
    """Lock only the rows of the queried model (not joined ones), without blocking foreign-key checks."""
    return queryset.select_for_update(no_key=True, of=("self",))


def _lock_room_and_participant(participant_id: int) -> tuple[Room | None, Participant | None]:
    """The participant's room and the participant, locked in that order (None when unknown)."""
    room_id = Participant.objects.filter(pk=participant_id).values_list("room_id", flat=True).first()
    if room_id is None:
        return None, None
    room = _lock(Room.objects.filter(pk=room_id)).get()
    participant = _lock(Participant.objects.filter(pk=participant_id)).get()
    participant.room = room
    return room, participant


def _create_room(name: str, record: bool, max_participants: int | None, locked: bool = False) -> Room:
    limit = max_participants or settings.ROOM_MAX_PARTICIPANTS
    limit = max(1, min(limit, settings.ROOM_MAX_PARTICIPANTS_LIMIT))
    room = Room.objects.create(name=name, record=record, max_participants=limit, locked=locked)
    _on_commit(signals.room_started, room=room)
    return room


def create_room(name: str, *, record: bool = False, max_participants: int | None = None, locked: bool = False) -> Room:
    """Open a room ahead of its participants; refused with ``room_exists`` while one of that name is active."""
    try:
        with transaction.atomic():
            if Room.objects.filter(name=name, finalized_at__isnull=True).exists():
                raise IntegrityError
            return _create_room(name, record, max_participants, locked)
    except IntegrityError:  # found, or a racing join created it first (the unique active name)
        raise RoomError(ErrorCode.ROOM_EXISTS, f"room '{name}' is already active") from None


@dataclass(frozen=True)
class Claim:
    """What a joining connection can prove about who it is, besides its login."""

    resume_secret: str | None = None
    """The secret of the participant's last STATE, if the client gave one."""
    token_subject: str | None = None
    """The subject of the connection's join token, if it has one."""
    user_id: int | None = None
    """The signed-in user, if any."""


def hash_resume_secret(secret: str) -> str:
    """The stored form of a resume secret (secrets are random: a plain SHA-256 suffices)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def holds_resume_secret(participant: Participant, secret: str | None) -> bool:
    """True when ``secret`` is the participant's current resume secret (compared in constant time)."""
    if not secret or not participant.resume_secret_hash:
        return False
    return hmac.compare_digest(participant.resume_secret_hash, hash_resume_secret(secret))


def proves_identity(participant: Participant, claim: Claim) -> bool:
    """The resume rule: the connection is this (dropped) participant.

    Its resume secret, or a join token for the same subject when the participant joined with a token, or the
    same signed-in user.  The login alone proves nothing.
    """
    if holds_resume_secret(participant, claim.resume_secret):
        return True
    if claim.token_subject and participant.token_subject == claim.token_subject:
        return True
    return claim.user_id is not None and participant.user_id == claim.user_id


def join(
    login: str,
    room_name: str,
    channel_name: str,
    *,
    record: bool = False,
    max_participants: int | None = None,
    role: str | None = None,
    user_id: int | None = None,
    resume_secret: str | None = None,
    token_subject: str | None = None,
    grants: frozenset[str] | None = None,
    on_locked: Callable[[str], None] | None = None,
) -> JoinOutcome:
    """Join ``room_name`` as ``login``, creating the room if needed.

    A login that is present in the room is refused (``login_taken``) unless
    this connection proves to be that participant (:func:`proves_identity`):
    a dropped one is then resumed, and one that still looks connected is taken
    over, with its resume secret only.  A full or locked room refuses
    newcomers.  The joiner's STATE carries a new resume secret.  Creating a recorded room needs
    ``can_record`` (``grants``: the token's explicit grants, else the role's).

    ``on_locked(group)`` is called with the room's group while the join holds the room's lock, before it commits
    (again if the join retries): a connection registers there for the room's events, so that it misses none of
    a change committed after its join (rooms.catchup).
    """
    claim = Claim(resume_secret=resume_secret, token_subject=token_subject, user_id=user_id)
    swept: Outcome | None = None
    for attempt in range(3):
        try:
            with transaction.atomic():
                joined = _join(login, room_name, channel_name, record, max_participants, role, claim, grants, on_locked)
            return joined if swept is None else _after_sweep(joined, swept, channel_name)
        except RoomError as exc:
            # The throttled sweep may not have run: a full room first lets expired participants go, then retries.
            if exc.code != ErrorCode.ROOM_FULL or swept is not None:
                raise
            swept = sweep_expired()
            if not swept.deliveries:
                raise
        except IntegrityError:
            # Two joins raced to create the room or to take the login: retry once
            # so the loser sees the winner's row and gets the proper answer.
            if attempt == 2:
                raise RoomError(ErrorCode.LOGIN_TAKEN, "Room already has user with such login") from None
    raise AssertionError("unreachable")


def _join(
    login: str,
    room_name: str,
    channel_name: str,
    record: bool,
    max_participants: int | None,
    role: str | None,
    claim: Claim,
    grants: frozenset[str] | None,
    on_locked: Callable[[str], None] | None = None,
) -> JoinOutcome:
    # A join is a few round trips on the process's one database thread, under the room's lock: the room with
    # its present set and audience count (rooms.roster), rows of participants this process has not seen, the
    # new row; the streams and the history only when the room has some.
    found = roster.lock_for_join(room_name, login)
    created = found is None
    if found is None:
        if record:
            creator_role = role or Role.MODERATOR
            require_grant(grants if grants is not None else grants_for_role(creator_role), Grant.CAN_RECORD)
        room = _create_room(room_name, record, max_participants)
        found = roster.RoomToJoin(room, viewers=0, listed=[], mine=None, has_live_streams=False, has_messages=False)
    room = found.room
    if on_locked is not None:
        on_locked(room.group_name)
    # The room's lock serialises presence changes: the others are read, not locked (a big room lists hundreds).
    existing = _lock(Participant.objects.filter(pk=found.mine)).get() if found.mine is not None else None
    count = Headcount(len(found.listed) + found.viewers, found.viewers)
    resumed = False
    outcome = JoinOutcome()
    secret = secrets.token_urlsafe(24)
    if existing is not None:
        _resume(existing, claim, channel_name, outcome)
        existing.resume_secret_hash = hash_resume_secret(secret)
        existing.save(update_fields=["state", "channel_name", "disconnected_at", "resume_secret_hash"])
        participant = existing
        resumed = True
    else:
        if room.locked:
            raise RoomError(ErrorCode.ROOM_LOCKED, "room is locked")
        if count.present >= room.max_participants:
            raise RoomError(ErrorCode.ROOM_FULL, "room is full")
        if role is None:
            role = Role.MODERATOR if created else Role.PUBLISHER
        participant = Participant(
            room=room,
            login=login,
            channel_name=channel_name,
            role=role,
            user_id=claim.user_id,
            token_subject=claim.token_subject or "",
            resume_secret_hash=hash_resume_secret(secret),
        )
        roster.insert(participant)
        _on_commit(signals.participant_joined, participant=participant)
        roster.remember(participant)
        count = Headcount(count.present + 1, count.viewers + is_audience(participant))
    streams = _live_streams_by_participant(room) if found.has_live_streams else {}
    if found.has_messages:
        history = history_for(room, participant, limit=settings.ROOM_HISTORY_COUNT)
    else:
        history = HistoryPage([], False)
    listed = roster.listed(found.listed, streams, skip=participant.pk)
    state = _event(
        EventType.STATE,
        room={**room_dict(room), "viewers": count.viewers},
        self={**participant_dict(participant, streams.get(participant.pk, [])), "resume_secret": secret},
        participants=listed.entries,
        history=[message_dict(m) for m in history.messages],
        history_more=history.more,
        resumed=resumed,
    )
    me = participant_dict(participant, streams.get(participant.pk, []))
    kind = EventType.PARTICIPANT_UPDATED if resumed else EventType.JOINED
    if not (resumed and is_audience(participant)):  # a resumed viewer changes no count
        _presence(outcome, room, participant, kind, me, channel_name, count)
    outcome.participant_id, outcome.room_id, outcome.group = participant.pk, room.pk, room.group_name
    outcome.state, outcome.listed, outcome.resumed = state, listed, resumed
    return outcome


def _resume(participant: Participant, claim: Claim, channel_name: str, outcome: JoinOutcome) -> None:
    """Give a present participant to the joining connection, or refuse with ``login_taken``.

    A dropped participant goes to a connection that proves to be it; one that
    still looks connected only to the holder of its resume secret (its old
    connection died unseen): its streams end and its old channel is forgotten.
    """
    if participant.state == ParticipantState.CONNECTED:
        if not holds_resume_secret(participant, claim.resume_secret):
            raise RoomError(ErrorCode.LOGIN_TAKEN, "Room already has user with such login")
        _end_streams(participant, outcome)
        outcome.superseded_channel = participant.channel_name
    elif not proves_identity(participant, claim):
        raise RoomError(ErrorCode.LOGIN_TAKEN, "Room already has user with such login")
    participant.state = ParticipantState.CONNECTED
    participant.channel_name = channel_name
    participant.disconnected_at = None


def _live_streams_by_participant(room: Room) -> dict[int, list[Stream]]:
    result: dict[int, list[Stream]] = {}
    for stream in Stream.objects.filter(participant__room=room, status=StreamStatus.PUBLISHING):
        result.setdefault(stream.participant_id, []).append(stream)
    return result


@dataclass(frozen=True)
class HistoryPage:
    """Messages oldest first, and whether older ones exist."""

    messages: list[Message]
    more: bool


class OctetLength(Func):
    """The UTF-8 size of a text column in bytes."""

    function = "OCTET_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))", **extra)


def history_for(
    room: Room, participant: Participant, *, limit: int | None = None, before: int | None = None,
    at_least_one: bool = False,
) -> HistoryPage:
    """The room's messages ``participant`` may see, older than message ``before`` (None: the newest), oldest
    first: at most ``limit`` (None: ROOM_HISTORY_COUNT) of them and ROOM_HISTORY_MAX_BYTES of text
    (``at_least_one``: the newest of them even if it alone is larger, so paging always progresses).

    A private message belongs to the people who sent and received it: the same
    participant record (kept across a resume) or the same signed-in user.  A
    guest who later takes a login that someone else left does not inherit it.
    """
    visible = Q(to_everyone=True) | Q(sender=participant) | Q(recipients=participant)
    if participant.user_id is not None:
        visible |= Q(sender__user_id=participant.user_id) | Q(recipients__user_id=participant.user_id)
    limit = settings.ROOM_HISTORY_COUNT if limit is None else limit
    candidates = Message.objects.filter(room=room).filter(visible)
    if before is not None:
        candidates = candidates.filter(pk__lt=before)
    sizes = candidates.order_by("-pk").values_list("pk", OctetLength("text")).distinct()[: limit + 1]
    budget, more = settings.ROOM_HISTORY_MAX_BYTES, False
    ids: list[int] = []
    for pk, size in sizes:
        if len(ids) == limit or (size > budget and (ids or not at_least_one)):
            more = True
            break
        ids.append(pk)
        budget -= size
    return HistoryPage(list(Message.objects.filter(pk__in=ids).order_by("pk")), more)


def history_page(participant_id: int, before: int | None, limit: int | None) -> dict[str, Any]:
    """The ``history`` event fields of a page of older messages for a present participant: ``limit``
    (default ROOM_HISTORY_COUNT, at most ROOM_HISTORY_PAGE_LIMIT) messages before message ``before``."""
    maximum = settings.ROOM_HISTORY_PAGE_LIMIT
    if limit is not None and limit > maximum:
        raise RoomError(ErrorCode.INVALID_FIELD, f"'limit' must be at most {maximum}")
    participant = Participant.objects.select_related("room").get(pk=participant_id)
    page = history_for(
        participant.room, participant, limit=limit or min(settings.ROOM_HISTORY_COUNT, maximum), before=before,
        at_least_one=True,
    )
    return {"messages": [message_dict(m) for m in page.messages], "more": page.more}


# --- Leaving, dropping, expiry and finalization ----------------------------------


def _end_streams(participant: Participant, outcome: Outcome, status: StreamStatus = StreamStatus.UNPUBLISHED) -> None:
    for stream in participant.streams.filter(status__in=LIVE):
        _set_stream_ended(stream, status, "", outcome, participant)


def _set_stream_ended(
    stream: Stream, status: StreamStatus, reason: str, outcome: Outcome, participant: Participant
) -> None:
    was_publishing = stream.status == StreamStatus.PUBLISHING
    stream.status = status
    stream.reason = reason[:200]
    stream.ended_at = timezone.now()
    stream.save(update_fields=["status", "reason", "ended_at"])
    outcome.closed_stream_ids.append(stream.public_id)
    data = stream_dict(stream, participant.login)
    if participant.channel_name:
        outcome.deliveries.append(
            Delivery(
                _event(EventType.STREAM_STATUS, stream=data, status=status, reason=reason),
                channels=(participant.channel_name,),
            )
        )
    if was_publishing:
        outcome.deliveries.append(
            Delivery(
                _event(EventType.UNPUBLISHED, participant=participant_dict(participant, []), stream=data),
                group=participant.room.group_name,
            )
        )
        _on_commit(signals.stream_unpublished, stream=stream)


def _mark_left(participant: Participant, outcome: Outcome, *, announce: bool = True) -> None:
    _end_streams(participant, outcome)
    participant.state = ParticipantState.LEFT
    participant.left_at = timezone.now()
    participant.save(update_fields=["state", "left_at"])
    if announce or not is_audience(participant):
        data = participant_dict(participant, [])
        _presence(outcome, participant.room, participant, EventType.LEFT, data, participant.channel_name or None)
    _on_commit(signals.participant_left, participant=participant)


def _finalize(room: Room, outcome: Outcome, reason: str = "empty") -> None:
    if room.finalized_at is not None:
        return
    for participant in _lock(room.participants.filter(state__in=PRESENT)):
        participant.room = room
        _mark_left(participant, outcome, announce=False)  # the audience count goes with the room
    room.finalized_at = timezone.now()
    room.save(update_fields=["finalized_at"])
    outcome.finalized_room_ids.append(room.pk)
    outcome.deliveries.append(
        Delivery(_event(EventType.ROOM_CLOSED, room=room_dict(room), reason=reason), group=room.group_name)
    )
    _on_commit(signals.room_finished, room=room)


def _finalize_if_empty(room: Room, outcome: Outcome) -> None:
    if not room.participants.filter(state__in=PRESENT).exists():
        _finalize(room, outcome)


@transaction.atomic
def leave(participant_id: int) -> Outcome:
    """Leave the room; the last one out finalizes it."""
    outcome = Outcome()
    room, participant = _lock_room_and_participant(participant_id)
    if room is None or participant is None or participant.state == ParticipantState.LEFT:
        return outcome
    _mark_left(participant, outcome)
    _finalize_if_empty(room, outcome)
    return outcome


@transaction.atomic
def drop(participant_id: int, channel_name: str) -> DropOutcome:
    """The connection ``channel_name`` closed without a leave.

    The participant stays present (disconnected) for ROOM_IDLE_TIMEOUT so the
    same login can resume; its streams end because their media is gone.
    """
    outcome = DropOutcome(participant_id=participant_id)
    _, participant = _lock_room_and_participant(participant_id)
    if (
        participant is None
        or participant.state != ParticipantState.CONNECTED
        or participant.channel_name != channel_name
    ):
        return outcome
    _end_streams(participant, outcome)
    participant.state = ParticipantState.DISCONNECTED
    participant.disconnected_at = timezone.now()
    participant.channel_name = ""
    participant.save(update_fields=["state", "disconnected_at", "channel_name"])
    outcome.disconnected_at = participant.disconnected_at
    if not is_audience(participant):  # a dropped viewer still counts until it expires
        data = participant_dict(participant, [])
        _presence(outcome, participant.room, participant, EventType.PARTICIPANT_UPDATED, data, None)
    return outcome


@transaction.atomic
def expire(participant_id: int, disconnected_at: datetime | None) -> Outcome:
    """A dropped participant did not come back in time: it leaves for good."""
    outcome = Outcome()
    room, participant = _lock_room_and_participant(participant_id)
    if (
        room is None
        or participant is None
        or participant.state != ParticipantState.DISCONNECTED
        or participant.disconnected_at != disconnected_at
    ):
        return outcome
    _mark_left(participant, outcome)
    _finalize_if_empty(room, outcome)
    return outcome


_last_sweep = 0.0
SWEEP_INTERVAL = 1.0
"""Seconds between two throttled sweeps of one process (see :func:`join`)."""


def sweep_due() -> bool:
    """True at most once a SWEEP_INTERVAL per process: then the caller runs :func:`sweep_expired` and delivers
    its outcome (a join must not pay a query for it each time)."""
    global _last_sweep
    now = time.monotonic()
    if now - _last_sweep < SWEEP_INTERVAL:
        return False
    _last_sweep = now
    return True


def _after_sweep(joined: JoinOutcome, swept: Outcome, channel_name: str) -> JoinOutcome:
    """The join's outcome plus what the sweep that made room for it changed; the joiner's state already says
    who is gone, so the sweep's events to the joiner's room skip it."""
    joined.deliveries[:0] = [
        replace(d, exclude=channel_name) if d.group == joined.group and d.exclude is None else d
        for d in swept.deliveries
    ]
    joined.finalized_room_ids.extend(swept.finalized_room_ids)
    joined.closed_stream_ids.extend(swept.closed_stream_ids)
    joined.muted_streams.extend(swept.muted_streams)
    return joined


def reset_sweep_throttle(*, just_swept: bool = False) -> None:
    """Forget when this process last swept: :func:`sweep_due` says yes next; with ``just_swept``, as if the
    throttled sweep had just run (no sweep for SWEEP_INTERVAL)."""
    global _last_sweep
    _last_sweep = time.monotonic() if just_swept else 0.0


def sweep_expired(now: datetime | None = None) -> Outcome:
    """Expire every participant dropped longer than ROOM_IDLE_TIMEOUT ago.

    Timers in the process that saw a drop normally do this; the sweep covers
    timers lost with a restarted process.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.ROOM_IDLE_TIMEOUT)
    outcome = Outcome()
    stale = Participant.objects.filter(state=ParticipantState.DISCONNECTED, disconnected_at__lte=cutoff)
    for participant_id, disconnected_at in stale.values_list("pk", "disconnected_at")[:200]:
        result = expire(participant_id, disconnected_at)
        outcome.deliveries.extend(result.deliveries)
        outcome.finalized_room_ids.extend(result.finalized_room_ids)
    return outcome


@transaction.atomic
def finalize_room(room_id: int, reason: str = "finalized") -> Outcome:
    """End a room now: everyone present leaves and the room is finalized."""
    outcome = Outcome()
    room = _lock(Room.objects.filter(pk=room_id)).get()
    _finalize(room, outcome, reason)
    return outcome


# --- Messages -------------------------------------------------------------------


def _present_participant(participant_id: int) -> Participant:
    participant = Participant.objects.select_related("room").filter(pk=participant_id).first()
    if participant is None or participant.state != ParticipantState.CONNECTED:
        raise RoomError(ErrorCode.NOT_JOINED, "join a room first")
    return participant


@transaction.atomic
def send_message(participant_id: int, text: str, to: tuple[str, ...] | None = None) -> tuple[dict[str, Any], Outcome]:
    """Store and route a message to everyone or to the listed logins.

    A private message reaches only its recipients and the sender's other
    views; it never enters anyone else's history.
    """
    sender = _present_participant(participant_id)
    return _store_and_route(sender.room, sender, text, to)


@transaction.atomic
def send_server_message(room_id: int, text: str, to: tuple[str, ...] | None = None) -> tuple[dict[str, Any], Outcome]:
    """A message from the server (REST, admin) to a room or to some logins; ``room_finished`` once it ended."""
    room = Room.objects.filter(pk=room_id, finalized_at__isnull=True).first()
    if room is None:
        raise RoomError(ErrorCode.ROOM_FINISHED, "the room is finished")
    return _store_and_route(room, None, text, to)


def check_message_text(text: str) -> None:
    """The message rule: valid Unicode of at most MESSAGE_MAX_BYTES in UTF-8, else a RoomError."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise RoomError(ErrorCode.INVALID_FIELD, "message text is not valid Unicode (lone surrogate)") from None
    if size > settings.MESSAGE_MAX_BYTES:
        raise RoomError(
            ErrorCode.MESSAGE_TOO_LARGE, f"message is {size} bytes; the limit is {settings.MESSAGE_MAX_BYTES} bytes"
        )


def _store_and_route(
    room: Room, sender: Participant | None, text: str, to: tuple[str, ...] | None
) -> tuple[dict[str, Any], Outcome]:
    check_message_text(text)
    recipients: list[Participant] = []
    if to is not None:
        present = {x.login: x for x in room.participants.filter(state__in=PRESENT)}
        missing = [login for login in to if login not in present]
        if missing:
            raise RoomError(ErrorCode.UNKNOWN_RECIPIENT, f"not in this room: {', '.join(missing[:10])}")
        recipients = [present[login] for login in to]
    message = Message.objects.create(
        room=room,
        sender=sender,
        sender_login=sender.login if sender else "",
        to_everyone=to is None,
        recipient_logins=list(to or ()),
        text=text,
    )
    if recipients:
        message.recipients.set(recipients)
    data = message_dict(message)
    event = _event(EventType.MESSAGE, message=data)
    outcome = Outcome()
    if to is None:
        outcome.deliveries.append(Delivery(event, group=room.group_name))
    else:
        channels = {x.channel_name for x in recipients if x.channel_name}
        if sender is not None and sender.channel_name:
            channels.add(sender.channel_name)
        outcome.deliveries.append(Delivery(event, channels=tuple(sorted(channels))))
    _on_commit(signals.message_sent, message=message)
    return data, outcome


# --- Streams --------------------------------------------------------------------


@transaction.atomic
def create_stream(participant_id: int, kind: str, record: bool) -> Stream:
    """Open a PENDING stream of ``kind`` for a participant (one per kind)."""
    participant = _present_participant(participant_id)
    if participant.streams.filter(kind=kind, status__in=LIVE).exists():
        raise RoomError(ErrorCode.ALREADY_PUBLISHING, f"already publishing a {kind} stream")
    check_publication_cap(participant)
    stream = Stream(participant=participant, kind=kind, record=record or participant.room.record)
    stream.name = f"{participant.login}-{kind}-{stream.public_id[:6]}"
    stream.save()
    return stream


def check_publication_cap(participant: Participant) -> None:
    """Refuse a publication past MEDIA_MAX_PUBLICATIONS_PER_PARTICIPANT live streams (too_many_publications)."""
    cap = settings.MEDIA_MAX_PUBLICATIONS_PER_PARTICIPANT
    if cap and participant.streams.filter(status__in=LIVE).count() >= cap:
        raise RoomError(
            ErrorCode.TOO_MANY_PUBLICATIONS, f"at most {cap} publications per participant; unpublish one first"
        )


def own_stream(participant_id: int, stream_id: str) -> Stream:
    """One of the participant's own live streams, or a stream_not_found error."""
    stream = (
        Stream.objects.select_related("participant", "participant__room")
        .filter(public_id=stream_id, participant_id=participant_id)
        .first()
    )
    if stream is None or not stream.is_live:
        raise RoomError(ErrorCode.STREAM_NOT_FOUND, "no such stream of yours is live")
    return stream


def playable_stream(participant_id: int, stream_id: str) -> Stream:
    """A PUBLISHING stream in the participant's room, or a clear refusal."""
    participant = _present_participant(participant_id)
    stream = (
        Stream.objects.select_related("participant", "participant__room")
        .filter(public_id=stream_id, participant__room_id=participant.room_id)
        .first()
    )
    if stream is None:
        raise RoomError(ErrorCode.STREAM_NOT_FOUND, "no such stream in this room")
    if stream.status != StreamStatus.PUBLISHING:
        raise RoomError(
            ErrorCode.STREAM_NOT_PUBLISHING,
            f"the requested stream must be in the active state PUBLISHING (it is {stream.status})",
        )
    return stream


def stream_to_watch(room_name: str, stream_or_login: str) -> Stream:
    """A PUBLISHING stream of an active room for a viewer outside it (WHEP): by stream id, or a present
    participant's login (its camera, else its newest live stream); refused with room_not_found,
    stream_not_found or stream_not_publishing."""
    room = Room.objects.filter(name=room_name, finalized_at__isnull=True).first()
    if room is None:
        raise RoomError(ErrorCode.ROOM_NOT_FOUND, f"no active room '{room_name}'")
    streams = Stream.objects.select_related("participant", "participant__room").filter(participant__room=room)
    stream = streams.filter(public_id=stream_or_login).first()
    if stream is None:
        by_login = streams.filter(
            participant__login=stream_or_login, participant__state__in=PRESENT, status__in=LIVE
        ).order_by("-pk")
        stream = by_login.filter(kind=p.StreamKind.CAMERA).first() or by_login.first()
    if stream is None:
        raise RoomError(ErrorCode.STREAM_NOT_FOUND, f"no stream or publishing participant '{stream_or_login}' here")
    if stream.status != StreamStatus.PUBLISHING:
        raise RoomError(
            ErrorCode.STREAM_NOT_PUBLISHING,
            f"the requested stream must be in the active state PUBLISHING (it is {stream.status})",
        )
    return stream


@transaction.atomic
def stream_publishing(
    stream_id: str, *, has_audio: bool, has_video: bool, audio_codec: str, video_codec: str
) -> Outcome:
    """Media flows: the stream is PUBLISHING; everyone is told."""
    outcome = Outcome()
    stream = (
        _lock(Stream.objects.select_related("participant", "participant__room"))
        .filter(public_id=stream_id)
        .first()
    )
    if stream is None or stream.status != StreamStatus.PENDING:
        return outcome
    stream.status = StreamStatus.PUBLISHING
    stream.started_at = timezone.now()
    stream.has_audio, stream.has_video = has_audio, has_video
    stream.audio_codec, stream.video_codec = audio_codec, video_codec
    stream.save()
    participant = stream.participant
    data = stream_dict(stream, participant.login)
    if participant.channel_name:
        outcome.deliveries.append(
            Delivery(
                _event(EventType.STREAM_STATUS, stream=data, status=stream.status, reason=""),
                channels=(participant.channel_name,),
            )
        )
    outcome.deliveries.append(
        Delivery(
            _event(EventType.PUBLISHED, participant=participant_dict(participant), stream=data),
            group=participant.room.group_name,
        )
    )
    _on_commit(signals.stream_published, stream=stream)
    return outcome


def active_speakers(room_id: int, stream_ids: list[str]) -> list[Delivery]:
    """The relay's speaker detection changed: the whole room hears who speaks (stream ids, loudest first)."""
    return [Delivery(_event(EventType.ACTIVE_SPEAKERS, streams=list(stream_ids)), group=Room(pk=room_id).group_name)]


@transaction.atomic
def stream_ended(stream_id: str, status: StreamStatus = StreamStatus.UNPUBLISHED, reason: str = "") -> Outcome:
    """A stream stopped (unpublish) or failed; players and the room are told."""
    outcome = Outcome()
    stream = (
        _lock(Stream.objects.select_related("participant", "participant__room"))
        .filter(public_id=stream_id)
        .first()
    )
    if stream is None or not stream.is_live:
        return outcome
    _set_stream_ended(stream, status, reason, outcome, stream.participant)
    return outcome


@transaction.atomic
def set_mute(
    stream_id: str,
    audio: bool | None,
    video: bool | None,
    participant_id: int | None = None,
    *,
    room_id: int | None = None,
) -> Outcome:
    """Store a live stream's mute flags (with neither given, audio is muted) and tell everyone in the room.

    ``participant_id`` restricts it to one's own streams, ``room_id`` (a moderator's mute) to the room's;
    any other stream is ``stream_not_found``.  The new flags are in ``outcome.muted_streams``.
    """
    if audio is None and video is None:
        audio = True
    outcome = Outcome()
    query = _lock(Stream.objects.select_related("participant", "participant__room"))
    query = query.filter(public_id=stream_id)
    if participant_id is not None:
        query = query.filter(participant_id=participant_id)
    if room_id is not None:
        query = query.filter(participant__room_id=room_id)
    stream = query.first()
    if stream is None or not stream.is_live:
        raise RoomError(ErrorCode.STREAM_NOT_FOUND, "no such live stream")
    if audio is not None:
        stream.audio_muted = audio
    if video is not None:
        stream.video_muted = video
    stream.save(update_fields=["audio_muted", "video_muted"])
    outcome.muted_streams.append((stream.public_id, stream.audio_muted, stream.video_muted))
    participant = stream.participant
    outcome.deliveries.append(
        Delivery(
            _event(
                EventType.STREAM_UPDATED,
                participant=participant_dict(participant),
                stream=stream_dict(stream, participant.login),
            ),
            group=participant.room.group_name,
        )
    )
    return outcome


# --- Moderation -------------------------------------------------------------------


@transaction.atomic
def kick(room_id: int, login: str, reason: str = "kicked by a moderator") -> Outcome:
    """Remove a present participant: it gets KICKED, the room gets LEFT; the last one out finalizes it."""
    room = _lock(Room.objects.filter(pk=room_id)).get()
    participant = _lock(Participant.objects.filter(room_id=room_id, login=login, state__in=PRESENT)).first()
    if participant is None:
        raise RoomError(ErrorCode.PARTICIPANT_NOT_FOUND, f"'{login}' is not in this room")
    outcome = Outcome()
    if participant.channel_name:
        event = _event(EventType.KICKED, participant=participant_dict(participant, []), reason=reason)
        outcome.deliveries.append(Delivery(event, channels=(participant.channel_name,)))
    participant.room = room
    _mark_left(participant, outcome)
    _finalize_if_empty(room, outcome)
    return outcome


@transaction.atomic
def update_room(room_id: int, *, locked: bool | None = None, max_participants: int | None = None) -> Outcome:
    """Lock, unlock or resize an active room (at most ROOM_MAX_PARTICIPANTS_LIMIT, for moderators too);
    everyone gets ROOM_UPDATED."""
    if max_participants is not None and max_participants > settings.ROOM_MAX_PARTICIPANTS_LIMIT:
        raise RoomError(
            ErrorCode.INVALID_FIELD,
            f"max_participants must be at most {settings.ROOM_MAX_PARTICIPANTS_LIMIT} (ROOM_MAX_PARTICIPANTS_LIMIT)",
        )
    room = _lock(Room.objects.filter(pk=room_id, finalized_at__isnull=True)).first()
    if room is None:
        raise RoomError(ErrorCode.ROOM_FINISHED, "the room is finished")
    changed = []
    if locked is not None:
        room.locked = locked
        changed.append("locked")
    if max_participants is not None:
        room.max_participants = max_participants
        changed.append("max_participants")
    room.save(update_fields=changed)
    event = _event(EventType.ROOM_UPDATED, room=room_dict(room))
    return Outcome(deliveries=[Delivery(event, group=room.group_name)])


@transaction.atomic
def unpublish_in_room(room_id: int, stream_id: str, reason: str) -> Outcome:
    """A moderator ends a stream of the room (a stream of another room is ``stream_not_found``)."""
    if not Stream.objects.filter(public_id=stream_id, participant__room_id=room_id).exists():
        raise RoomError(ErrorCode.STREAM_NOT_FOUND, "no such stream in this room")
    return stream_ended(stream_id, reason=reason)
