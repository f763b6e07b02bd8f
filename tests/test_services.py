"""Room rules through rooms.services alone: no sockets, no channel layer."""

from __future__ import annotations

import time
from typing import Any

import pytest

from rooms import protocol as p
from rooms import services
from rooms.auth import authenticate_hello
from rooms.exceptions import ErrorCode, RoomError
from rooms.models import Message, Participant, Room
from rooms.presenters import participant_dict

pytestmark = pytest.mark.django_db

CYRILLIC = "Привет, как дела?"
CJK = "你好，世界。こんにちは。안녕하세요"
EMOJI = "👋🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️"
RTL = "שלום עולם — مرحبا بالعالم"


def chan(login: str) -> str:
    """A made-up channel name for a login (no channel layer is involved)."""
    return f"test.{login}!chan"


def join(login: str, room: str = "r", **kwargs: Any) -> services.JoinOutcome:
    """Join as ``login`` on its own channel."""
    return services.join(login, room, chan(login), **kwargs)


def events(outcome: services.Outcome, kind: str) -> list[services.Delivery]:
    """The deliveries of one event type."""
    return [d for d in outcome.deliveries if d.event["type"] == kind]


# --- session ------------------------------------------------------------------------


def test_hello_with_username_is_established() -> None:
    """A good username gives an identity (the consumer answers ESTABLISHED)."""
    command = p.parse_command({"type": "hello", "version": 1, "username": "  alice "})
    assert isinstance(command, p.Hello)
    identity = authenticate_hello(command)
    assert identity.login == "alice"


@pytest.mark.parametrize("payload", [{}, {"username": ""}, {"username": "   "}, {"username": 5},
                                     {"username": "a\u0000b"}, {"username": "x" * 65}])
def test_bad_or_missing_username_fails(payload: dict[str, Any]) -> None:
    """A missing, blank, non-string, control-character or too long username: invalid_username."""
    with pytest.raises(p.ProtocolError) as refused:
        p.parse_command({"type": "hello", "version": 1, **payload})
    assert refused.value.code == ErrorCode.INVALID_USERNAME


def test_wrong_version_fails() -> None:
    """Another protocol version: unsupported_version."""
    with pytest.raises(p.ProtocolError) as refused:
        p.parse_command({"type": "hello", "version": 2, "username": "alice"})
    assert refused.value.code == ErrorCode.UNSUPPORTED_VERSION


# --- join ---------------------------------------------------------------------------


def test_join_creates_then_joins() -> None:
    """The first join creates the room; the second joins the same one."""
    first = join("alice")
    second = join("bob")
    assert first.room_id == second.room_id
    assert Room.objects.filter(name="r", finalized_at__isnull=True).count() == 1
    assert first.group == second.group == Room.objects.get(pk=first.room_id).group_name


def test_state_content_and_joined_event() -> None:
    """STATE holds the room, self, the others with their live streams, the history; the others get JOINED."""
    alice = join("alice")
    stream = services.create_stream(alice.participant_id, "camera", False)
    services.stream_publishing(stream.public_id, has_audio=True, has_video=True, audio_codec="opus", video_codec="VP8")
    services.send_message(alice.participant_id, "hi all")
    bob = join("bob")
    state = bob.state
    assert state["type"] == p.EventType.STATE and state["resumed"] is False
    assert state["room"]["name"] == "r" and state["room"]["max_participants"] >= 1
    assert state["self"]["login"] == "bob" and state["self"]["state"] == "connected"
    assert [x["login"] for x in state["participants"]] == ["alice"]
    streams = state["participants"][0]["streams"]
    assert [(s["id"], s["kind"], s["status"]) for s in streams] == [(stream.public_id, "camera", "PUBLISHING")]
    assert [m["text"] for m in state["history"]] == ["hi all"]
    (joined,) = events(bob, p.EventType.JOINED)
    assert joined.group == bob.group and joined.exclude == chan("bob")
    assert joined.event["participant"]["login"] == "bob"


def test_first_joiner_moderates() -> None:
    """The creator is the room's moderator; later joiners publish."""
    assert join("alice").state["self"]["role"] == "moderator"
    assert join("bob").state["self"]["role"] == "publisher"


def test_login_taken() -> None:
    """A login present (connected) in the room is refused with login_taken."""
    join("alice")
    with pytest.raises(RoomError) as refused:
        services.join("alice", "r", "another.channel")
    assert refused.value.code == ErrorCode.LOGIN_TAKEN
    assert "login" in refused.value.message
    join("alice", "other-room")  # the same login is fine in another room


def test_room_full_with_a_per_room_limit(settings: Any) -> None:
    """A room created with max_participants=2 refuses the third with room_full; the default comes from settings."""
    settings.ROOM_MAX_PARTICIPANTS = 3
    join("alice", max_participants=2)
    join("bob", max_participants=50)  # the limit is the creator's; later values are ignored
    with pytest.raises(RoomError) as refused:
        join("carol")
    assert refused.value.code == ErrorCode.ROOM_FULL and refused.value.message == "room is full"
    assert join("a", "default-room").state["room"]["max_participants"] == 3


def test_room_limit_is_capped(settings: Any) -> None:
    """A creator cannot exceed ROOM_MAX_PARTICIPANTS_LIMIT."""
    settings.ROOM_MAX_PARTICIPANTS_LIMIT = 5
    assert join("alice", max_participants=1000).state["room"]["max_participants"] == 5


def listed_in_db(room_id: int, but: int) -> list[dict[str, Any]]:
    """What a joiner's ``state.participants`` must be, read afresh: every present participant but viewers and
    the joiner, in join order, with its publishing streams."""
    present = Participant.objects.filter(room_id=room_id, state__in=p.PRESENT_STATES).exclude(role=p.Role.VIEWER)
    return [participant_dict(x) for x in present.exclude(pk=but).order_by("joined_at", "pk")]


def test_state_lists_what_the_database_holds_through_every_change(settings: Any) -> None:
    """The roster of a join (the room's present set from its lock query, participants' fixed fields cached by
    this process) is what the database holds: after joins, drops, a leave, resumes, a viewer, a live stream, a
    refused join and a participant this process never saw (joined through another process)."""
    settings.ROOM_IDLE_TIMEOUT = 60
    first = join("alice")
    room_id = first.room_id

    def check(outcome: services.JoinOutcome) -> None:
        assert outcome.state["participants"] == listed_in_db(room_id, outcome.participant_id)

    bob = join("bob")
    check(bob)
    check(join("carol"))
    services.drop(bob.participant_id, chan("bob"))
    check(join("dave"))
    services.leave(Participant.objects.get(room_id=room_id, login="carol", state="connected").pk)
    check(join("erin", role=p.Role.VIEWER))
    resumed = services.join("bob", "r", "bob.again", resume_secret=secret_of(bob))
    check(resumed)
    # Another process's join: a row this process has not seen.
    Participant.objects.create(room_id=room_id, login="frank", channel_name="elsewhere", role=p.Role.PUBLISHER)
    stream = services.create_stream(first.participant_id, p.StreamKind.CAMERA, record=False)
    services.stream_publishing(stream.public_id, has_audio=True, has_video=True, audio_codec="opus",
                               video_codec="VP8")
    check(join("gina"))
    full = Participant.objects.filter(room_id=room_id, state__in=p.PRESENT_STATES).count()
    services.update_room(room_id, max_participants=full)
    with pytest.raises(RoomError):
        join("hank")
    services.drop(resumed.participant_id, "bob.again")
    check(services.join("bob", "r", "bob.third", resume_secret=secret_of(resumed)))
    assert [x["login"] for x in join("zoe", room="r2").state["participants"]] == []


# --- leave, finalize ----------------------------------------------------------------


def test_leave_tells_others_and_last_out_finalizes() -> None:
    """leave: the others get LEFT; the last one out finalizes; the same name then makes a new room."""
    alice = join("alice")
    bob = join("bob")
    outcome = services.leave(bob.participant_id)
    (left,) = events(outcome, p.EventType.LEFT)
    assert left.event["participant"]["login"] == "bob" and left.event["participant"]["state"] == "left"
    assert left.group == alice.group
    assert Room.objects.get(pk=alice.room_id).finalized_at is None

    outcome = services.leave(alice.participant_id)
    assert outcome.finalized_room_ids == [alice.room_id]
    assert events(outcome, p.EventType.ROOM_CLOSED)
    assert Room.objects.get(pk=alice.room_id).finalized_at is not None

    again = join("alice")
    assert again.room_id != alice.room_id
    assert again.state["history"] == []


def test_leave_twice_is_harmless() -> None:
    """A second leave changes nothing."""
    alice = join("alice")
    services.leave(alice.participant_id)
    assert services.leave(alice.participant_id).deliveries == []


def test_leave_then_join_at_once() -> None:
    """leave followed at once by join with the same login works: no login_taken, no waiting."""
    join("bob")
    alice = join("alice")
    services.leave(alice.participant_id)
    again = join("alice")
    assert again.room_id == alice.room_id and not again.resumed
    assert again.participant_id != alice.participant_id


# --- drop, resume, expiry ---------------------------------------------------------------


def secret_of(outcome: services.JoinOutcome) -> str:
    """The resume secret a join's STATE gave."""
    secret = outcome.state["self"]["resume_secret"]
    assert isinstance(secret, str)
    return secret


def test_drop_marks_disconnected_and_resume_reconnects() -> None:
    """A dropped participant is disconnected (others told); its login with its resume secret resumes."""
    join("alice")
    bob = join("bob")
    dropped = services.drop(bob.participant_id, chan("bob"))
    assert dropped.disconnected_at is not None
    (update,) = events(dropped, p.EventType.PARTICIPANT_UPDATED)
    assert update.event["participant"]["state"] == "disconnected"
    assert Participant.objects.get(pk=bob.participant_id).state == Participant.State.DISCONNECTED

    resumed = services.join("bob", "r", "new.channel", resume_secret=secret_of(bob))
    assert resumed.resumed and resumed.state["resumed"] is True
    assert resumed.participant_id == bob.participant_id
    (update,) = events(resumed, p.EventType.PARTICIPANT_UPDATED)
    assert update.event["participant"]["state"] == "connected"
    assert not events(resumed, p.EventType.JOINED)
    # the timer of the old drop finds a resumed participant and does nothing
    assert services.expire(bob.participant_id, dropped.disconnected_at).deliveries == []


def test_a_dropped_login_without_proof_is_login_taken() -> None:
    """The login alone, a wrong secret, or another token subject does not resume a dropped participant."""
    bob = join("bob")
    services.drop(bob.participant_id, chan("bob"))
    for proof in ({}, {"resume_secret": "wrong"}, {"resume_secret": ""}, {"token_subject": "bob"}, {"user_id": 1}):
        with pytest.raises(RoomError) as refused:
            services.join("bob", "r", "mallory.channel", **proof)
        assert refused.value.code == ErrorCode.LOGIN_TAKEN, proof
    assert Participant.objects.get(pk=bob.participant_id).state == Participant.State.DISCONNECTED


def test_the_resume_secret_is_stored_hashed_and_changes_at_every_join() -> None:
    """The database holds only the secret's hash; a resume gives a new secret and spends the old one."""
    bob = join("bob")
    first = secret_of(bob)
    stored = Participant.objects.get(pk=bob.participant_id).resume_secret_hash
    assert first not in stored and stored == services.hash_resume_secret(first)
    services.drop(bob.participant_id, chan("bob"))
    resumed = services.join("bob", "r", "second.channel", resume_secret=first)
    second = secret_of(resumed)
    assert second != first and len(second) >= 22
    services.drop(bob.participant_id, "second.channel")
    with pytest.raises(RoomError):
        services.join("bob", "r", "third.channel", resume_secret=first)
    assert services.join("bob", "r", "third.channel", resume_secret=second).resumed


def test_the_same_token_subject_or_user_resumes() -> None:
    """A participant that joined with a token resumes with a token of the same subject; a user with the user."""
    carol = join("carol", token_subject="carol")
    services.drop(carol.participant_id, chan("carol"))
    assert services.join("carol", "r", "again.channel", token_subject="carol").resumed
    from django.contrib.auth.models import User

    user = User.objects.create_user("dave")
    dave = join("dave", user_id=user.pk)
    services.drop(dave.participant_id, chan("dave"))
    assert services.join("dave", "r", "again.dave", user_id=user.pk).resumed


def test_the_secret_takes_over_a_participant_that_looks_connected() -> None:
    """A connection that died unseen: the secret takes its participant over (streams end, old channel named);
    a token of the same subject does not (a second tab must not steal the first's place)."""
    join("alice")
    bob = join("bob", token_subject="bob")
    services.create_stream(bob.participant_id, "camera", False)
    with pytest.raises(RoomError) as refused:
        services.join("bob", "r", "tab2.channel", token_subject="bob")
    assert refused.value.code == ErrorCode.LOGIN_TAKEN
    taken = services.join("bob", "r", "new.channel", resume_secret=secret_of(bob))
    assert taken.resumed and taken.superseded_channel == chan("bob")
    assert len(taken.closed_stream_ids) == 1
    assert services.drop(bob.participant_id, chan("bob")).deliveries == []  # the old close changes nothing
    assert Participant.objects.get(pk=bob.participant_id).channel_name == "new.channel"


def test_drop_of_an_old_channel_is_ignored() -> None:
    """A late disconnect of a replaced connection does not drop the resumed one."""
    bob = join("bob")
    services.drop(bob.participant_id, chan("bob"))
    services.join("bob", "r", "new.channel", resume_secret=secret_of(bob))
    assert services.drop(bob.participant_id, chan("bob")).deliveries == []
    assert Participant.objects.get(pk=bob.participant_id).state == Participant.State.CONNECTED


def test_expiry_after_idle_timeout_finalizes(settings: Any) -> None:
    """Nobody resumes within ROOM_IDLE_TIMEOUT: the participant leaves and the empty room is finalized."""
    settings.ROOM_IDLE_TIMEOUT = 0.5
    alice = join("alice")
    services.drop(alice.participant_id, chan("alice"))
    assert services.sweep_expired().deliveries == []  # not yet
    time.sleep(0.7)
    outcome = services.sweep_expired()
    assert [d.event["participant"]["login"] for d in events(outcome, p.EventType.LEFT)] == ["alice"]
    assert outcome.finalized_room_ids == [alice.room_id]
    assert Room.objects.get(pk=alice.room_id).finalized_at is not None
    assert Participant.objects.get(pk=alice.participant_id).state == Participant.State.LEFT


def test_expiry_keeps_a_room_with_someone_connected(settings: Any) -> None:
    """An expired participant leaves; the room lives on while someone is connected."""
    settings.ROOM_IDLE_TIMEOUT = 0.5
    alice = join("alice")
    bob = join("bob")
    dropped = services.drop(bob.participant_id, chan("bob"))
    time.sleep(0.7)
    outcome = services.expire(bob.participant_id, dropped.disconnected_at)
    assert [d.event["participant"]["login"] for d in events(outcome, p.EventType.LEFT)] == ["bob"]
    assert outcome.finalized_room_ids == []
    assert Room.objects.get(pk=alice.room_id).finalized_at is None


def test_join_sweeps_expired_before_admitting(settings: Any) -> None:
    """A login whose drop expired (timer lost with its process) joins afresh, and a full room frees up."""
    settings.ROOM_IDLE_TIMEOUT = 0.5
    join("alice", max_participants=2)
    bob = join("bob")
    services.drop(bob.participant_id, chan("bob"))
    time.sleep(0.7)
    services.reset_sweep_throttle(just_swept=True)  # the full room must sweep by itself
    carol = join("carol")
    assert [x["login"] for x in carol.state["participants"]] == ["alice"]
    (left,) = events(carol, p.EventType.LEFT)  # alice learns that bob is gone; carol's state says it already
    assert left.group == carol.group and left.event["participant"]["login"] == "bob" and left.exclude == chan("carol")


def test_the_sweep_is_due_once_an_interval() -> None:
    """sweep_due answers yes once, then no until SWEEP_INTERVAL has passed (or the throttle is reset)."""
    services.reset_sweep_throttle()
    assert services.sweep_due() and not services.sweep_due()
    services.reset_sweep_throttle()
    assert services.sweep_due()


# --- messages ---------------------------------------------------------------------------


def test_message_to_all() -> None:
    """to=None goes to the room group, with to null."""
    alice = join("alice")
    join("bob")
    message, outcome = services.send_message(alice.participant_id, "hello")
    assert message["from"] == "alice" and message["to"] is None and message["text"] == "hello"
    (delivery,) = outcome.deliveries
    assert delivery.group == alice.group and delivery.event == {"type": p.EventType.MESSAGE, "message": message}


def test_message_to_one_and_to_a_list() -> None:
    """A private message goes to its recipients' channels and the sender's, nobody else's."""
    alice = join("alice")
    join("bob")
    join("carol")
    join("dave")
    message, outcome = services.send_message(alice.participant_id, "psst", ("bob",))
    assert message["to"] == ["bob"]
    (delivery,) = outcome.deliveries
    assert delivery.group is None and set(delivery.channels) == {chan("alice"), chan("bob")}
    message, outcome = services.send_message(alice.participant_id, "you two", ("bob", "carol"))
    assert message["to"] == ["bob", "carol"]
    assert set(outcome.deliveries[0].channels) == {chan("alice"), chan("bob"), chan("carol")}


def test_message_to_someone_absent_is_refused() -> None:
    """An unknown recipient: unknown_recipient, nothing stored."""
    alice = join("alice")
    with pytest.raises(RoomError) as refused:
        services.send_message(alice.participant_id, "hi", ("nobody",))
    assert refused.value.code == ErrorCode.UNKNOWN_RECIPIENT
    assert not Message.objects.exists()


@pytest.mark.parametrize("text", [CYRILLIC, CJK, EMOJI, RTL, "mixed: " + CYRILLIC + CJK + EMOJI + RTL])
def test_unicode_arrives_unchanged(text: str) -> None:
    """Cyrillic, CJK, emoji and RTL text is stored and delivered exactly, also as JSON on the wire."""
    alice = join("alice")
    join("bob")
    message, outcome = services.send_message(alice.participant_id, text, ("bob",))
    assert message["text"] == text
    assert Message.objects.get(pk=message["id"]).text == text
    wire = p.encode(outcome.deliveries[0].event)
    assert text in wire  # sent as UTF-8, not escaped
    assert p.decode_frame(wire, None, 10**7)["message"]["text"] == text


def test_data_url_near_the_limit_is_delivered(settings: Any) -> None:
    """A data: URL image just under MESSAGE_MAX_BYTES (1 MiB by default) is delivered intact."""
    assert settings.MESSAGE_MAX_BYTES == 1024 * 1024
    alice = join("alice")
    join("bob")
    prefix = "data:image/png;base64,"
    text = prefix + "A" * (settings.MESSAGE_MAX_BYTES - len(prefix))
    message, outcome = services.send_message(alice.participant_id, text)
    assert len(message["text"].encode()) == settings.MESSAGE_MAX_BYTES
    assert outcome.deliveries[0].event["message"]["text"] == text


def test_message_over_the_limit_is_refused(settings: Any) -> None:
    """One byte over MESSAGE_MAX_BYTES (counted in UTF-8): message_too_large, nothing stored."""
    alice = join("alice")
    with pytest.raises(RoomError) as refused:
        services.send_message(alice.participant_id, "A" * (settings.MESSAGE_MAX_BYTES + 1))
    assert refused.value.code == ErrorCode.MESSAGE_TOO_LARGE
    settings.MESSAGE_MAX_BYTES = 10
    with pytest.raises(RoomError):
        services.send_message(alice.participant_id, "ééééé é")  # 7 characters, 13 bytes
    assert not Message.objects.exists()


def test_message_before_join_is_refused() -> None:
    """A participant that left cannot send."""
    alice = join("alice")
    join("bob")
    services.leave(alice.participant_id)
    with pytest.raises(RoomError) as refused:
        services.send_message(alice.participant_id, "hi")
    assert refused.value.code == ErrorCode.NOT_JOINED


def test_history_count(settings: Any) -> None:
    """A joiner gets the ROOM_HISTORY_COUNT most recent messages, oldest first."""
    settings.ROOM_HISTORY_COUNT = 3
    alice = join("alice")
    for n in range(5):
        services.send_message(alice.participant_id, f"m{n}")
    assert [m["text"] for m in join("bob").state["history"]] == ["m2", "m3", "m4"]


def test_history_privacy() -> None:
    """A private message is in the history of its sender and recipients only, never of a later namesake."""
    alice = join("alice")
    bob = join("bob")
    carol = join("carol")
    services.send_message(alice.participant_id, "public")
    services.send_message(alice.participant_id, "for bob", ("bob",))
    services.send_message(carol.participant_id, "carol to alice", ("alice",))
    zed = join("zed")

    def texts(outcome: services.JoinOutcome) -> list[str]:
        participant = Participant.objects.get(pk=outcome.participant_id)
        return [m.text for m in services.history_for(participant.room, participant).messages]

    assert texts(alice) == ["public", "for bob", "carol to alice"]
    assert texts(bob) == ["public", "for bob"]
    assert texts(carol) == ["public", "carol to alice"]
    assert texts(zed) == ["public"]
    # bob leaves; whoever joins next as "bob" is a new participant and does not inherit his private messages
    services.leave(bob.participant_id)
    assert [m["text"] for m in join("bob").state["history"]] == ["public"]
    # a newcomer's STATE shows only what it may see
    assert [m["text"] for m in join("eve").state["history"]] == ["public"]


# --- room rules of the REST API and moderation ------------------------------------------


def test_create_room_then_the_same_name_is_refused() -> None:
    """create_room opens a locked room ahead of joins; a second one of that name is room_exists."""
    room = services.create_room("ahead", max_participants=3, locked=True)
    assert room.locked and room.max_participants == 3 and room.is_active
    with pytest.raises(RoomError) as refused:
        services.create_room("ahead")
    assert refused.value.code == ErrorCode.ROOM_EXISTS
    services.finalize_room(room.pk)
    assert services.create_room("ahead").pk != room.pk  # a finished room's name is free again


def test_kick_tells_the_kicked_one_and_the_room() -> None:
    """kick: KICKED to the participant's channel, LEFT to the room; an absent login is participant_not_found."""
    join("mod")
    join("bob")
    room = Room.objects.get(name="r")
    outcome = services.kick(room.pk, "bob", "bye")
    kicked = events(outcome, p.EventType.KICKED)
    assert kicked[0].channels == (chan("bob"),) and kicked[0].event["reason"] == "bye"
    assert events(outcome, p.EventType.LEFT)[0].group == room.group_name
    with pytest.raises(RoomError) as refused:
        services.kick(room.pk, "bob")
    assert refused.value.code == ErrorCode.PARTICIPANT_NOT_FOUND


def test_update_room_locks_and_resizes_until_finished() -> None:
    """update_room changes only what it is given and tells the room; a finished room is room_finished."""
    join("mod")
    room = Room.objects.get(name="r")
    outcome = services.update_room(room.pk, locked=True)
    assert events(outcome, p.EventType.ROOM_UPDATED)[0].event["room"]["locked"] is True
    services.update_room(room.pk, max_participants=7)
    room.refresh_from_db()
    assert room.locked and room.max_participants == 7
    services.finalize_room(room.pk)
    with pytest.raises(RoomError) as refused:
        services.update_room(room.pk, locked=False)
    assert refused.value.code == ErrorCode.ROOM_FINISHED


def test_set_mute_reports_the_new_flags_and_defaults_to_audio() -> None:
    """set_mute fills muted_streams; with neither flag it mutes audio; another room's stream is not found."""
    me = join("pub")
    stream = services.create_stream(me.participant_id, p.StreamKind.CAMERA, False)
    outcome = services.set_mute(stream.public_id, None, None, room_id=me.room_id)
    assert outcome.muted_streams == [(stream.public_id, True, False)]
    outcome = services.set_mute(stream.public_id, None, True, me.participant_id)
    assert outcome.muted_streams == [(stream.public_id, True, True)]
    assert events(outcome, p.EventType.STREAM_UPDATED)[0].event["stream"]["video_muted"] is True
    other = join("x", room="elsewhere")
    with pytest.raises(RoomError) as refused:
        services.set_mute(stream.public_id, True, None, room_id=other.room_id)
    assert refused.value.code == ErrorCode.STREAM_NOT_FOUND


def test_unpublish_in_room_ends_only_the_rooms_streams() -> None:
    """unpublish_in_room ends a stream of the room; a stream of another room is stream_not_found."""
    me = join("pub")
    other = join("x", room="elsewhere")
    stream = services.create_stream(me.participant_id, p.StreamKind.CAMERA, False)
    with pytest.raises(RoomError) as refused:
        services.unpublish_in_room(other.room_id, stream.public_id, "no")
    assert refused.value.code == ErrorCode.STREAM_NOT_FOUND
    outcome = services.unpublish_in_room(me.room_id, stream.public_id, "by the server")
    assert outcome.closed_stream_ids == [stream.public_id]
    stream.refresh_from_db()
    assert stream.status == p.StreamStatus.UNPUBLISHED


def test_server_message_to_a_finished_room_is_refused() -> None:
    """send_server_message: room_finished once the room ended; check_message_text holds the size rule."""
    me = join("mod")
    services.leave(me.participant_id)
    with pytest.raises(RoomError) as refused:
        services.send_server_message(me.room_id, "hello?")
    assert refused.value.code == ErrorCode.ROOM_FINISHED
    with pytest.raises(RoomError) as bad:
        services.check_message_text("\ud800")
    assert bad.value.code == ErrorCode.INVALID_FIELD
