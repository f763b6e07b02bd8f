"""Fixtures of the network tests: namespaces that are always removed, and a server running inside one.

Every test here needs root (ip netns, nftables, tc). Elsewhere they are skipped with the reason; under
CI=true (which runs as root) a missing requirement fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.network.netns import Namespace, cleanup_leftovers, missing_requirements


def require_network() -> None:
    """Skip (fail under CI) unless namespaces, nftables and tc can be used here."""
    reason = missing_requirements()
    if not reason:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI runs as root with scripts/system-deps.sh installed")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def _no_leftovers() -> None:
    """Namespaces of a crashed earlier run are deleted once per session."""
    if not missing_requirements():
        cleanup_leftovers()


@pytest.fixture
def namespaces(_no_leftovers: None) -> Iterator[Callable[[str], Namespace]]:
    """``namespaces(tag)`` creates a namespace that is deleted after the test, whatever happens."""
    require_network()
    created: list[Namespace] = []

    def create(tag: str) -> Namespace:
        namespace = Namespace.create(tag)
        created.append(namespace)
        return namespace

    try:
        yield create
    finally:
        for namespace in reversed(created):
            namespace.delete()


@pytest.fixture
def lan(namespaces: Callable[[str], Namespace]) -> Namespace:
    """One namespace with a veth pair inside (198.18.0.1 and 198.18.0.2): a host with two interfaces."""
    namespace = namespaces("lan")
    namespace.veth("v0", "198.18.0.1/24", peer=namespace, peer_device="v1", peer_address="198.18.0.2/24")
    return namespace
