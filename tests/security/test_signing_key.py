"""Finding 2 of issue 11: a default signing key in production, tokens that never expire, no revocation.

The production environment below is the one README's "Production settings"
documents; ``manage.py check --deploy`` must be clean with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from rooms.models import APIKey
from rooms.tokens import mint_token
from tests.roomclient import RoomClient
from tests.servers import ROOT, DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

#: The production environment README documents (with a made-up key and host).
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "k3P9v_0hT7-NqZ2rYw8sLf5jXc1bGd4eHa6uMi9oRp3tVy7nEs2QzWx5LkJ0",
    "ALLOWED_HOSTS": "rooms.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://rooms.example.org",
    "TRUSTED_PROXIES": "127.0.0.1",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def django_env(overrides: dict[str, str], drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment for a Django subprocess, with ``overrides`` and without ``drop``."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["DJANGO_SETTINGS_MODULE"] = "conference.settings"
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run manage.py in a subprocess (bounded)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_debug_false_with_the_default_or_an_empty_key_refuses_to_start() -> None:
    """Finding 2: with DEBUG=false and no SECRET_KEY (the public default) or an empty one, Django does not
    start: ImproperlyConfigured naming SECRET_KEY; with a real key it starts."""
    production = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    for env in (django_env(production, drop=("SECRET_KEY",)), django_env({**production, "SECRET_KEY": ""})):
        result = manage("check", env=env)
        assert result.returncode != 0, result.stdout + result.stderr
        assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY" in result.stderr, result.stderr[-2000:]
    default = django_env({**production, "SECRET_KEY": "dev-insecure-change-me-in-production"})
    assert manage("check", env=default).returncode != 0
    assert manage("check", env=django_env(PRODUCTION_ENV)).returncode == 0


def test_daphne_refuses_to_start_with_the_public_default_key(transactional_db: Any) -> None:
    """Finding 2: a real daphne with DEBUG=false and the public default SECRET_KEY never answers /healthz,
    and its log says why."""
    env = {**PRODUCTION_ENV, "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "false"}
    server = DaphneServer({**env, "SECRET_KEY": "dev-insecure-change-me-in-production"}, start_timeout=20)
    with pytest.raises(RuntimeError) as failed:
        server.start()
    server.close()
    assert "SECRET_KEY" in str(failed.value)


def test_check_deploy_is_clean_with_the_documented_production_environment() -> None:
    """Finding 2 / 9 (HSTS, secure cookies): `manage.py check --deploy --fail-level WARNING` passes with the
    production environment README documents."""
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=django_env(PRODUCTION_ENV))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout, result.stdout


def test_tokens_always_expire() -> None:
    """Finding 2: a token asked for without a lifetime still gets an `exp` within the maximum TTL (REST and
    mint_token); a token signed without `exp` is refused at hello with invalid_token."""
    token = mint_token("r", "alice", ttl_seconds=None)
    claims = jwt.decode(token, django_settings.SECRET_KEY, algorithms=["HS256"], audience="roomapi")
    assert "exp" in claims
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {APIKey.create_key('tests')[1]}")
    response = client.post("/api/rooms/r/tokens", {"login": "bob", "ttl_seconds": None}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["expires_at"] is not None
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    assert claims["exp"] <= datetime.now(UTC).timestamp() + 31 * 24 * 3600


async def test_a_token_without_exp_is_refused() -> None:
    """Finding 2: a hand-signed token with no `exp` (what ttl_seconds null minted) fails the session."""
    forever = jwt.encode(
        {"aud": "roomapi", "sub": "mallory", "room": "r", "role": "moderator"},
        django_settings.SECRET_KEY,
        algorithm="HS256",
    )
    client = await RoomClient.connect()
    reply = await client.request({"type": "hello", "version": 1, "token": forever})
    assert reply["type"] == "failed" and reply["code"] == "invalid_token", reply
    await client.close()


async def test_a_revoked_token_is_refused() -> None:
    """Finding 2: a minted token carries a `jti`; after DELETE /api/rooms/<room>/tokens/<jti> a hello with it
    fails with token_revoked (before, it was accepted)."""
    from channels.db import database_sync_to_async

    def mint_and_revoke() -> tuple[str, int]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {APIKey.create_key('tests')[1]}")
        minted = client.post("/api/rooms/r/tokens", {"login": "dave", "role": "moderator"}, format="json")
        assert minted.status_code == 201, minted.content
        token = minted.json()["token"]
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        return token, client.delete(f"/api/rooms/r/tokens/{jti}").status_code

    token, status = await database_sync_to_async(mint_and_revoke)()
    assert status in (200, 204)
    client = await RoomClient.connect()
    reply = await client.request({"type": "hello", "version": 1, "token": token})
    assert reply["type"] == "failed" and reply["code"] == "token_revoked", reply
    await client.close()


def test_a_token_is_revoked_in_the_admin() -> None:
    """Finding 2: a staff user pastes a token into the admin's "Revoked tokens" add form; the token is then
    refused with token_revoked (hello checks through rooms.tokens.ensure_not_revoked)."""
    from django.contrib.auth.models import User
    from django.test import Client

    from rooms.exceptions import RoomError
    from rooms.models import RevokedToken
    from rooms.tokens import ensure_not_revoked, verify_token

    token = mint_token("r", "erin", role="moderator")
    ensure_not_revoked(verify_token(token))
    staff = Client()
    staff.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    added = staff.post("/admin/rooms/revokedtoken/add/", {"token": token, "reason": "leaked"})
    assert added.status_code == 302, added.content.decode()[-2000:]
    row = RevokedToken.objects.get()
    assert (row.jti, row.room, row.reason) == (verify_token(token).jti, "r", "leaked")
    with pytest.raises(RoomError) as refused:
        ensure_not_revoked(verify_token(token))
    assert refused.value.code == "token_revoked"
    assert staff.get(f"/admin/rooms/revokedtoken/{row.pk}/change/").status_code == 200
