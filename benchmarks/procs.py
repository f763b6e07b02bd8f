"""Process helpers: free ports, CPU pinning, CPU time from /proc, stopping what we started."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RELAY_CPU = 0
CLIENT_CPU = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process (all its threads) in seconds, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    # Fields after the command: state is field 3, utime field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pin_self(cpu: int = CLIENT_CPU) -> bool:
    """Pin this process (all future threads) to one CPU if the machine has it."""
    if cpu >= (os.cpu_count() or 1):
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def pinned(command: list[str], cpu: int = RELAY_CPU) -> list[str]:
    """``command`` under ``taskset -c cpu`` (the exec'd process keeps the PID)."""
    if cpu >= (os.cpu_count() or 1):
        return command
    return ["taskset", "-c", str(cpu), *command]


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)



def production_environment() -> dict[str, str]:
    """DEBUG off as in production, with a throwaway signing key (the server refuses the default one) and plain
    HTTP on loopback (no HTTPS redirect)."""
    import secrets

    return {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50), "SECURE_SSL_REDIRECT": "false"}
