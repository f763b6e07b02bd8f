"""Summaries of py-spy's collapsed stacks: where the relay's time goes, by function."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

logger = logging.getLogger(__name__)


def summarize(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function (``name (file:line)`` frames, line numbers dropped)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "self %  function"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["", "total %  function (self + callees)"]
    lines += [f"{100 * n / total:7.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _function(frame: str) -> str:
    # py-spy frames look like "forward (media_relay/forwarding.py:97)"; keep the file, drop the line.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:]) if path else ""
    return f"{name} ({short})" if short else name
