"""Revocation stays immediate with the per-process copy of the revoked tokens (rooms.tokens).

A hello checks a token against this process's set of revoked ``jti`` s while the revocation version in Redis
has not moved; every revocation, in any process, moves it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from rooms.exceptions import RoomError
from rooms.models import RevokedToken
from rooms.tokens import ensure_not_revoked, mint_token, verify_token
from tests.roomclient import RoomClient
from tests.servers import ROOT, subprocess_database_url

pytestmark = pytest.mark.django_db(transaction=True)

needs_redis = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the cached revocations need REDIS_URL")


async def hello(token: str) -> dict[str, object]:
    client = await RoomClient.connect()
    try:
        return await client.request({"type": "hello", "version": 1, "token": token})
    finally:
        await client.close()


def revoke_in_another_process(token: str) -> None:
    """``rooms.tokens.revoke`` run by another Python process on the same database and Redis (bounded)."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="conference.settings", DATABASE_URL=subprocess_database_url())
    env.pop("TEST_DB_NAME", None)
    script = ("import django; django.setup(); from rooms.tokens import revoke, verify_token; "
              f"revoke(verify_token({token!r}).jti, room='r', reason='leaked')")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60, capture_output=True)


@needs_redis
async def test_a_token_revoked_by_another_process_is_refused_at_the_next_hello() -> None:
    """This process has the revocations cached (a hello went through); another process revokes the token; the
    very next hello here is refused with token_revoked."""
    from asgiref.sync import sync_to_async

    token = mint_token("r", "dave", role="moderator")
    assert (await hello(token))["type"] == "established"
    await sync_to_async(revoke_in_another_process)(token)
    reply = await hello(token)
    assert reply["type"] == "failed" and reply["code"] == "token_revoked", reply


@needs_redis
def test_a_hello_reads_no_database_while_the_revocations_do_not_change() -> None:
    """The set is read once per change of the revocations: later hellos only ask Redis for the version."""
    from rooms.tokens import revoke

    first, second = mint_token("r", "erin"), mint_token("r", "fay")
    revoke(verify_token(first).jti)
    ensure_not_revoked(verify_token(second))
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            ensure_not_revoked(verify_token(second))
    assert len(queries) == 0, [q["sql"] for q in queries]
    with pytest.raises(RoomError) as refused:
        ensure_not_revoked(verify_token(first))
    assert refused.value.code == "token_revoked"


@needs_redis
def test_a_revocation_deleted_lets_the_token_in_again() -> None:
    """Deleting the row (the admin's delete) moves the version too: the token is accepted at the next hello."""
    from rooms.tokens import revoke

    token = verify_token(mint_token("r", "gus"))
    revoke(token.jti)
    with pytest.raises(RoomError):
        ensure_not_revoked(token)
    RevokedToken.objects.filter(jti=token.jti).delete()
    ensure_not_revoked(token)


def test_without_an_answering_redis_the_database_decides() -> None:
    """Redis unreachable: a revoked token is still refused (the database is read)."""
    from rooms.tokens import revoke

    token = verify_token(mint_token("r", "hal"))
    with override_settings(REDIS_URL=""):
        revoke(token.jti)
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"), pytest.raises(RoomError) as refused:
        ensure_not_revoked(token)
    assert refused.value.code == "token_revoked"
