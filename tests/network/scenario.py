"""The three-way chat scenario: three participant processes (tests/network/chat.py) in a namespace.

``run_chat(namespace, server, room)`` starts ann, bob and cat, each publishing camera + microphone and
playing the two others, collects each one's report (bounded), then lets them all leave together.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from tests.network.netns import Namespace
from tests.servers import DaphneServer

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = {"ann": "220,40,40", "bob": "40,200,40", "cat": "40,40,220"}
SETUP_SECONDS = 60.0
PRIORITY = -10
"""The participants' and the server's nice value: the test measures the network, not a busy machine's scheduler."""

Report = dict[str, dict[str, dict[str, Any]]]
"""viewer -> publisher -> figures (see tests.network.chat.Watch)."""


def run_chat(
    namespace: Namespace, server: DaphneServer | None, room: str, seconds: float = 15.0, codec: str = "VP8",
    recovery: bool = True, module: str = "tests.network.chat", url: str | None = None,
) -> Report:
    """Run the chat for ``seconds`` of measured media; every viewer's figures per publisher.

    ``module`` is the participant's program (benchmarks.janus_chat for Janus) and ``url`` what it connects to
    (default: the server's WebSocket URL).
    """
    target = url or (server.ws_url if server is not None else "")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    processes: dict[str, subprocess.Popen[str]] = {}
    logs: dict[str, Any] = {}
    try:
        for name, color in PEOPLE.items():
            others = ",".join(n for n in PEOPLE if n != name)
            logs[name] = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in finally
            processes[name] = subprocess.Popen(
                namespace.wrap([sys.executable, "-m", module, "--url", target, "--room", room,
                                "--name", name, "--others", others, "--color", color, "--codec", codec,
                                "--seconds", str(seconds), *([] if recovery else ["--no-recovery"])],
                               nice=PRIORITY),
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[name], text=True,
            )
        lines = _first_lines(processes, SETUP_SECONDS + seconds)
        report: Report = {}
        for name, line in lines.items():
            if not line:
                logs[name].seek(0)
                raise AssertionError(f"{name} reported nothing; its output:\n{logs[name].read()[-4000:]}")
            data = json.loads(line)
            report[name] = data["played"]
            for figures in report[name].values():
                figures["viewer_max_stall_ms"] = data["max_stall_ms"]
        return report
    finally:
        for process in processes.values():
            if process.stdin is not None:
                try:
                    process.stdin.close()
                except OSError:
                    pass
        for name, process in processes.items():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            logs[name].close()


def _first_lines(processes: dict[str, subprocess.Popen[str]], timeout: float) -> dict[str, str]:
    lines: dict[str, str] = {}

    def read(name: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        lines[name] = process.stdout.readline()

    threads = [threading.Thread(target=read, args=item, daemon=True) for item in processes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return {name: lines.get(name, "") for name in processes}


def table(report: Report) -> str:
    """One line per played stream: viewer <- publisher, fps, freezes, longest gap, first frame."""
    rows = []
    for viewer, played in sorted(report.items()):
        for publisher, f in sorted(played.items()):
            rows.append(
                f"{viewer} <- {publisher}: {f['fps']:5.1f} fps, {f['freezes']} freezes ({f['frozen_ms']:.0f} ms), "
                f"max gap {f['max_gap_ms']:.0f} ms, first frame {f['first_frame_ms']} ms, audio {f['audio_frames']}, "
                f"viewer stalled up to {f['viewer_max_stall_ms']:.0f} ms"
            )
    return "\n".join(rows)
