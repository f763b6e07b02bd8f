"""The benchmark's quick mode runs end to end against our server (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(90)
def test_quick_benchmark_delivers_frames_to_both_players() -> None:
    """`python -m benchmarks --quick` publishes pre-encoded VP8 through a real daphne to 2 players."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--servers", "ours", "--no-doc"],
        cwd=ROOT, capture_output=True, text=True, timeout=80,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    row = next(line for line in completed.stdout.splitlines() if line.split()[:2] == ["2", "ours"])
    assert row.split()[-1] == "2/2", completed.stdout
    frames = float(row.split()[3])
    assert frames > 0, completed.stdout
