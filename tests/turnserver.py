"""Debian's coturn for tests: ``turnserver`` on 127.0.0.1 with TURN REST credentials (use-auth-secret).

    with TurnServer() as turn:
        turn.url          # "turn:127.0.0.1:PORT?transport=udp"
        turn.secret       # the static-auth-secret that rooms.turn mints credentials with

It listens and relays on loopback only (``allow-loopback-peers``: both ends of a test are local), without
TLS/DTLS listeners, CLI or any database but a scratch SQLite file; entering waits (bounded) until it
answers a STUN binding request, leaving stops it and removes its directory.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
START_TIMEOUT = 15.0
REALM = "conference.test"


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nobody uses right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stun_binding_answers(port: int, timeout: float = 0.5) -> bool:
    """True when a STUN server on 127.0.0.1:``port`` answers a binding request (RFC 5389)."""
    transaction = secrets.token_bytes(12)
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return data[:2] == b"\x01\x01" and data[8:20] == transaction


class TurnServer:
    """A coturn process on 127.0.0.1 and a free port, with a random shared secret."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret or secrets.token_urlsafe(24)
        self.port = 0
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The TURN URL of the server (UDP)."""
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def config(self) -> str:
        """The server's whole configuration."""
        assert self.directory is not None
        return "\n".join([
            f"listening-port={self.port}",
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            "min-port=49152",
            "max-port=65535",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={REALM}",
            "fingerprint",
            "no-tls",
            "no-dtls",
            "no-tcp-relay",
            "no-cli",
            "no-multicast-peers",
            "allow-loopback-peers",
            "no-software-attribute",
            f"userdb={self.directory / 'turndb'}",
            f"pidfile={self.directory / 'turnserver.pid'}",
            f"log-file={self.directory / 'turnserver.log'}",
            "simple-log",
            "no-stdout-log",
            "verbose",
            "",
        ])

    def log_text(self) -> str:
        """What coturn logged so far."""
        if self.directory is None:
            return ""
        try:
            return (self.directory / "turnserver.log").read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        """Start coturn and wait until it answers STUN; RuntimeError with its log if it does not."""
        self.directory = Path(tempfile.mkdtemp(prefix="coturn-"))
        for _attempt in range(3):
            self.port = free_udp_port()
            config = self.directory / "turnserver.conf"
            config.write_text(self.config())
            self.process = subprocess.Popen(
                [TURNSERVER, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.process.poll() is None:
                if stun_binding_answers(self.port):
                    return
                time.sleep(0.1)
            self.stop()
        log = self.log_text()
        self.close()
        raise RuntimeError(f"coturn did not answer on 127.0.0.1 within {START_TIMEOUT} s; its log:\n{log[-4000:]}")

    def stop(self) -> None:
        """Stop the process (killed if it lingers)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=5)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def close(self) -> None:
        """Stop the process and remove its directory."""
        self.stop()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
