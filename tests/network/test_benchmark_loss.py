"""benchmarks.loss still runs: the chat at 0 % loss against ours (and Janus where it and its anchor config are
installed), a few seconds each, no doc written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.network.conftest import require_network

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_loss_runs_the_chat_against_each_server() -> None:
    """Every played stream of every server decodes something."""
    require_network()
    from benchmarks.janus import JanusServer

    servers = ["ours", "janus"] if JanusServer.available() else ["ours"]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.loss", "--losses", "0", "--seconds", "8", "--no-doc",
         "--servers", *servers],
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = json.loads((ROOT / "artifacts" / "bench-loss.json").read_text())["rows"]
    assert [row["server"] for row in rows] == servers, result.stdout
    for row in rows:
        assert row["never"] == 0, result.stdout
