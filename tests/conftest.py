"""Shared fixtures: real services, bounded waits."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings


def redis_available() -> bool:
    """True when REDIS_URL points at a Redis that answers."""
    url = os.environ.get("REDIS_URL") or settings.REDIS_URL
    if not url:
        return False
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


def require_redis() -> None:
    """Fail under CI, skip elsewhere, when the test needs Redis and there is none."""
    if redis_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("REDIS_URL must point at a running Redis under CI")
    pytest.skip("needs Redis: set REDIS_URL=redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def fresh_channel_layers() -> Iterator[None]:
    """Each test gets new channel layers: a channels-redis layer binds its locks and pools to one event loop,
    and pytest-asyncio gives every test its own loop."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """STATIC_ROOT filled by ``collectstatic`` once per session (hashed, compressed names, as production serves)."""
    from tests.servers import collect_static

    return collect_static(tmp_path_factory.mktemp("static"))


# --- Background tasks (issue 14) --------------------------------------------------------------------------------
@pytest.fixture
def task_worker(transactional_db: None) -> Iterator[object]:
    """The task worker (webhook rounds, room mixes) running on a thread of the test for the test's duration."""
    from tests.task_worker import running_worker

    with running_worker() as worker:
        yield worker


# --- The forward path's native half (issue 13) ------------------------------------------------------------------
MEDIA_PATH_SUITES = frozenset({"tests.test_media", "tests.test_forwarding", "tests.test_simulcast"})
"""Modules whose tests run twice: with the native fast path (media_relay.fastpath) and with MEDIA_FASTPATH=off."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__ in MEDIA_PATH_SUITES and "media_path" not in metafunc.fixturenames:
        metafunc.fixturenames.append("media_path")
        metafunc.parametrize("media_path", ["native", "python"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def media_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """The forward path a module's tests run with: ``native`` (fails under CI, skips elsewhere, when the module is
    not built) or ``python`` (MEDIA_FASTPATH=off, here and in the servers the tests start)."""
    from media_relay import fastpath

    mode = getattr(request, "param", "native")
    if mode == "native" and not fastpath.built():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the native fast path must be built under CI: {fastpath.status()}")
        pytest.skip(f"native fast path: {fastpath.status()}")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MEDIA_FASTPATH", "on" if mode == "native" else "off")
            fastpath.use(mode == "native")
            yield mode
    finally:
        fastpath.use(not fastpath.disabled_by_environment())
