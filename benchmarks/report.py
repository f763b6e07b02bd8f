"""Tables of results: plain text for the terminal, Markdown for docs/performance.md."""

from __future__ import annotations

import math
from collections.abc import Sequence

from benchmarks.runner import Result

HEADERS = [
    "K", "server", "pkts/s", "frames/s", "expected", "relay CPU", "us/pkt", "lat p50 ms", "lat p99 ms",
    "client CPU", "players ok",
]


def _num(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _ratio(a: float, b: float) -> str:
    if not a or not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}"


def rows(results: Sequence[Result]) -> list[list[str]]:
    """One row per result, then one ratio row (ours/Janus) per K that has both."""
    table: list[list[str]] = []
    by_k: dict[int, dict[str, Result]] = {}
    for r in results:
        by_k.setdefault(r.players, {})[r.server] = r
    for k in sorted(by_k):
        for r in by_k[k].values():
            table.append([
                str(k), r.server, _num(r.packets_per_s), _num(r.frames_per_s), _num(r.expected_frames_per_s),
                f"{_num(r.relay_cpu * 100, 1)}%", _num(r.us_per_packet, 1), _num(r.latency_p50_ms, 1),
                _num(r.latency_p99_ms, 1), f"{_num(r.client_cpu * 100, 1)}%",
                f"{r.connected}/{k}" + (f" ({r.error})" if r.error else ""),
            ])
        ours, janus = by_k[k].get("ours"), by_k[k].get("janus")
        if ours and janus:
            table.append([
                str(k), "ours/janus", "", _ratio(ours.frames_per_s, janus.frames_per_s), "", "",
                _ratio(ours.us_per_packet, janus.us_per_packet), "", "", "", "",
            ])
    return table


def text_table(results: Sequence[Result]) -> str:
    """A fixed-width table."""
    body = rows(results)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(HEADERS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def markdown_table(results: Sequence[Result]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---:" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines)


HALF_JANUS = 0.5  # issue 13's target for CPU per delivered packet against Janus in the same run


def verdicts(results: Sequence[Result]) -> list[str]:
    """The issue's targets, checked against the figures."""
    out = []
    by_k: dict[int, dict[str, Result]] = {}
    for r in results:
        by_k.setdefault(r.players, {})[r.server] = r
    for k in sorted(by_k):
        ours, janus = by_k[k].get("ours"), by_k[k].get("janus")
        if ours is None:
            continue
        if janus is not None and not math.isnan(janus.us_per_packet) and not math.isnan(ours.us_per_packet):
            ratio = ours.us_per_packet / janus.us_per_packet
            out.append(f"K={k}: CPU per packet {ours.us_per_packet:.1f} us vs Janus {janus.us_per_packet:.1f} us "
                       f"(ratio {ratio:.2f}): at or below Janus " + ("MET" if ratio <= 1 else "MISSED")
                       + f"; at most {HALF_JANUS}x Janus (issue 13) " + ("MET" if ratio <= HALF_JANUS else "MISSED"))
        full = ours.frames_per_s >= 0.98 * ours.expected_frames_per_s
        out.append(f"K={k}: frame rate {ours.frames_per_s:.0f}/{ours.expected_frames_per_s:.0f}: "
                   + ("full" if full else "NOT full"))
        if not math.isnan(ours.latency_p99_ms):
            out.append(f"K={k}: latency p99 {ours.latency_p99_ms:.1f} ms: "
                       + ("MET (< 20 ms)" if ours.latency_p99_ms < 20 else "MISSED (>= 20 ms)"))
    return out
