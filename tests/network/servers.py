"""A daphne process inside a network namespace.

The namespace has its own loopback, so the server reaches PostgreSQL through its Unix socket and runs
without Redis (in-memory channel layer, one process, in-process media relay).  Its health is probed
from a thread that enters the namespace.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

from django.db import connection

from tests.network.netns import Namespace
from tests.servers import DaphneServer

logger = logging.getLogger(__name__)

POSTGRES_SOCKET_DIRS = ("/var/run/postgresql", "/run/postgresql", "/tmp")


def namespace_database_url() -> str:
    """The test database as seen from any namespace: PostgreSQL by its Unix socket, SQLite by its file."""
    settings = connection.settings_dict
    engine = settings["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        return "sqlite:///" + str(Path(str(settings["NAME"])).resolve())
    port = settings.get("PORT") or "5432"
    for directory in POSTGRES_SOCKET_DIRS:
        if Path(directory, f".s.PGSQL.{port}").exists():
            user = quote(str(settings.get("USER") or ""), safe="")
            password = quote(str(settings.get("PASSWORD") or ""), safe="")
            auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
            return f"postgres://{auth}{quote(directory, safe='')}:{port}/{quote(str(settings['NAME']), safe='')}"
    raise RuntimeError("a server in a network namespace needs PostgreSQL's Unix socket (none found)")


class NamespacedServer(DaphneServer):
    """A :class:`DaphneServer` whose process runs inside ``namespace``."""

    def __init__(
        self, namespace: Namespace, env: dict[str, str] | None = None, nice: int = 0, bind: str = "127.0.0.1"
    ) -> None:
        overrides = {"REDIS_URL": "", "LOG_LEVEL": "WARNING", **(env or {})}
        super().__init__(overrides)
        self.namespace = namespace
        self.nice = nice
        self.bind = bind
        """The address daphne listens on ("0.0.0.0": also reachable from namespaces joined to this one)."""

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["DATABASE_URL"] = namespace_database_url()
        return env

    def command(self) -> list[str]:
        args = super().command()
        args[args.index("-b") + 1] = self.bind
        return self.namespace.wrap(args, nice=self.nice)

    def url_at(self, address: str, scheme: str = "http") -> str:
        """The server's URL at ``address`` (an address of the namespace, as another namespace reaches it)."""
        return f"{scheme}://{address}:{self.port}"

    def healthy(self) -> bool:
        return self.namespace.call(super().healthy, timeout=10)
