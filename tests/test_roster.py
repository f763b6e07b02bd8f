"""rooms.roster: a join's ``state.participants`` put together from each participant's cached entry and JSON text
is exactly what encoding the whole state gives, as participants change state and publish."""

from __future__ import annotations

import json

import pytest

from rooms import protocol as p
from rooms import roster, services

pytestmark = pytest.mark.django_db


def state_event(outcome: services.JoinOutcome) -> dict[str, object]:
    return p.Event(p.EventType.STATE, {k: v for k, v in outcome.state.items() if k != "type"}).to_dict("r1")


def test_the_spliced_state_is_the_encoded_state() -> None:
    logins = ["alice", "bob", "zoë", "日本", "carol"]
    outcomes = {login: services.join(login, "spliced", f"chan-{login}") for login in logins}
    bob = outcomes["bob"].participant_id
    services.drop(bob, "chan-bob")  # bob's entry is now another one ("disconnected")
    stream = services.create_stream(outcomes["carol"].participant_id, p.StreamKind.CAMERA, False)
    services.stream_publishing(stream.public_id, has_audio=True, has_video=True, audio_codec="opus",
                               video_codec="VP8")
    for login in ("dave", "erin"):  # erin's join lists the others from what dave's join cached
        outcome = services.join(login, "spliced", f"chan-{login}")
        event = state_event(outcome)
        assert outcome.listed is not None and event["participants"] is outcome.listed.entries
        text = roster.encode_state(event, outcome.listed)
        assert text == p.encode(event)
        listed = {x["login"]: x for x in json.loads(text)["participants"]}
        assert listed["bob"]["state"] == p.ParticipantState.DISCONNECTED
        assert [s["id"] for s in listed["carol"]["streams"]] == [stream.public_id]
        assert listed["zoë"]["streams"] == [] and "日本" in listed
    assert roster.encode_state({"type": "state", "participants": []}, None) == '{"type":"state","participants":[]}'
