"""Charts of the benchmark results for docs/performance.md, drawn with matplotlib into docs/img/*.png.

``python -m benchmarks.charts`` (run by ``make bench`` and ``make bench-load`` after the benchmarks) reads the
tables the benchmarks wrote into docs/performance.md and the raw series ``python -m benchmarks.load`` keeps
in docs/img/load-series.json (per-join latencies, soak RSS samples), and draws:

- ``cpu-per-packet.png``: relay CPU per forwarded packet against the number of players K, ours and Janus;
- ``media-rooms.png``: frames/s (mean and worst stream) and relay CPU against 3-person rooms;
- ``soak-memory.png``: summed daphne RSS over the soak;
- ``join-latency.png``: join latency against the participants already connected.

A chart whose raw series is missing (a run made before the benchmarks kept them) is drawn from the table's
summary figures and says so on the chart.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
IMG = ROOT / "docs" / "img"
SERIES = IMG / "load-series.json"
OURS, JANUS, GREY = "#4f46e5", "#d97706", "#6b7280"
DPI = 110


# --- reading ----------------------------------------------------------------------------------------------------


def markdown_table(text: str, first_headers: Sequence[str]) -> list[dict[str, str]]:
    """The rows (header -> cell) of the first Markdown table whose header row starts with ``first_headers``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = _cells(line)
        if cells[: len(first_headers)] == list(first_headers) and i + 1 < len(lines) and "---" in lines[i + 1]:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(cells, _cells(row), strict=False)))
            return rows
    return []


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not line.startswith("|"):
        return []
    return [cell.strip() for cell in line.strip("|").split("|")]


def number(cell: str) -> float:
    """The first number in a table cell ("8.3%" -> 8.3, "**0**" -> 0, "+1.24" -> 1.24); NaN if none."""
    match = re.search(r"[-+]?\d+(?:\.\d+)?", cell.replace(",", ""))
    return float(match.group()) if match else float("nan")


@dataclass
class Figures:
    """What the charts need, from docs/performance.md and the raw series file."""

    relay: list[dict[str, str]]
    media: list[dict[str, str]]
    signalling: list[dict[str, str]]
    soak: list[dict[str, str]]
    series: dict[str, Any]


def read(doc: Path = DOC, series_path: Path = SERIES) -> Figures:
    """Parse the benchmark tables of ``doc`` and load the raw series (if kept)."""
    text = doc.read_text()
    series = json.loads(series_path.read_text()) if series_path.exists() else {}
    return Figures(
        relay=markdown_table(text, ["K", "server", "pkts/s"]),
        media=markdown_table(text, ["rooms", "played streams"]),
        signalling=markdown_table(text, ["clients", "rooms", "daphne procs"]),
        soak=markdown_table(text, ["duration", "population"]),
        series=series,
    )


def update_series(path: Path, parts: dict[str, Any]) -> None:
    """Replace the given parts ("joins", "soak") of the raw series file, keeping the others."""
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, separators=(",", ":")) + "\n")


# --- drawing ----------------------------------------------------------------------------------------------------


def _figure(title: str) -> tuple[Figure, Axes]:
    fig, ax = plt.subplots(figsize=(7.2, 4.2), dpi=DPI, layout="constrained")
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _note(ax: Axes, text: str) -> None:
    """A grey footnote under the chart (where the figures come from)."""
    ax.get_figure().supxlabel(text, x=0.99, ha="right", fontsize=8, color=GREY)  # type: ignore[union-attr]


def cpu_per_packet(rows: list[dict[str, str]]) -> Figure:
    """us of relay CPU per delivered packet against K, one line per server."""
    fig, ax = _figure("Relay CPU per forwarded packet (lower is better)")
    for server, label, color in (("ours", "ours (aiortc relay, 1 process)", OURS), ("janus", "Janus 1.1.2", JANUS)):
        points = sorted((number(r["K"]), number(r["us/pkt"])) for r in rows if r.get("server") == server)
        if not points:
            continue
        ks, us = zip(*points, strict=True)
        ax.plot(ks, us, marker="o", color=color, label=label, linewidth=2)
        for k, value in points:
            ax.annotate(f"{value:.1f}", (k, value), textcoords="offset points", xytext=(0, 7), ha="center",
                        fontsize=8, color=color)
    ax.set_xlabel("players K (one publisher, VP8 30 fps)")
    ax.set_ylabel("µs of CPU per packet")
    ax.set_ylim(bottom=0)
    ticks = sorted({number(r["K"]) for r in rows})
    ax.set_xticks(ticks)
    ax.legend(frameon=False)
    _note(ax, "python -m benchmarks: relay pinned to one core, 20 s window per K")
    return fig


def media_rooms(rows: list[dict[str, str]]) -> Figure:
    """Frames/s (mean and worst played stream) and relay CPU against the number of 3-person rooms."""
    fig, ax = _figure("Media: 3-person rooms, everyone publishes VP8 30 fps + Opus and plays the others")
    rooms = [number(r["rooms"]) for r in rows]
    ax.plot(rooms, [number(r["video fps mean"]) for r in rows], marker="o", markersize=3, color=OURS,
            linewidth=2, label="frames/s, mean of played streams")
    ax.plot(rooms, [number(r["worst"]) for r in rows], marker="v", markersize=3, color=OURS, alpha=0.5,
            linestyle="--", label="frames/s, worst played stream")
    ax.axhline(29.4, color=GREY, linewidth=0.8, linestyle=":")
    ax.text(rooms[0] if rooms else 0, 28.9, "ok: mean >= 29.4 fps", fontsize=8, color=GREY, va="top")
    ax.set_xlabel("rooms (3 participants each: 6 played streams per room)")
    ax.set_ylabel("frames/s per played stream")
    ax.set_ylim(0, 33)
    cpu = ax.twinx()
    cpu.plot(rooms, [number(r["relay CPU"]) for r in rows], color=JANUS, marker="s", markersize=3, linewidth=1.5,
             label="relay CPU (2 workers), % of one core")
    cpu.set_ylabel("relay CPU, % of one core", color=JANUS)
    cpu.set_ylim(0, 210)
    cpu.spines["top"].set_visible(False)
    degraded = [number(r["rooms"]) for r in rows if r.get("verdict") and r["verdict"] != "ok"]
    if degraded:
        ax.axvspan(degraded[0] - 0.5, max(rooms) + 0.5, color="#fee2e2", alpha=0.6, linewidth=0)
        ax.text(degraded[0], 31.2, "degraded", fontsize=8, color="#b91c1c", ha="right")
    handles = ax.get_legend_handles_labels()[0] + cpu.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + cpu.get_legend_handles_labels()[1]
    ax.legend(handles, labels, frameon=False, loc="center left", bbox_to_anchor=(0.0, 0.55), fontsize=8)
    _note(ax, "python -m benchmarks.load --part media: clients on the same 2 cores")
    return fig


def soak_memory(rows: list[dict[str, str]], series: dict[str, Any]) -> Figure:
    """Summed daphne RSS over the soak: every sample when kept, otherwise the table's start, end and slope."""
    fig, ax = _figure("Soak: memory of the daphne processes over time")
    samples = series.get("soak", {}).get("samples") or []
    if samples:
        minutes, mb = zip(*samples, strict=True)
        ax.plot(minutes, mb, color=OURS, linewidth=1.5, label="summed RSS of the daphne processes")
        _fit_line(ax, list(minutes), list(mb))
        population = series["soak"].get("population")
        _note(ax, f"{len(samples)} samples; {population} clients joining, chatting, leaving and dropping")
    elif rows:
        row = rows[0]
        total = number(row["duration"]) / 60
        start, end = number(row["RSS start MB"]), number(row["RSS end MB"])
        slope = number(row["slope MB/min (after 1st fifth)"])
        ax.plot([0, total], [start, end], "o", color=OURS, label="RSS at start and end (table)")
        warm = total / 5
        ax.plot([warm, total], [end - slope * (total - warm), end], color=OURS, linestyle="--",
                label=f"fitted slope after warm-up: {slope:+.2f} MB/min")
        _note(ax, "this run kept no samples: start, end and fitted slope from the table")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, loc="lower right", bbox_to_anchor=(1.0, 0.08))
    return fig


def _fit_line(ax: Axes, xs: list[float], ys: list[float]) -> None:
    """The least-squares line over the samples after the first fifth (warm-up), as the table's slope."""
    if len(xs) < 3:
        return
    cut = xs[0] + (xs[-1] - xs[0]) / 5
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if x >= cut]
    n = len(pts)
    if n < 2:
        return
    mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
    var = sum((p[0] - mx) ** 2 for p in pts)
    if not var:
        return
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / var
    ax.plot([cut, xs[-1]], [my + slope * (cut - mx), my + slope * (xs[-1] - mx)], color=JANUS, linestyle="--",
            label=f"fit after warm-up: {slope:+.2f} MB/min")


def join_latency(rows: list[dict[str, str]], series: dict[str, Any]) -> Figure:
    """Join latency (hello sent -> state received) against the participants already connected."""
    fig, ax = _figure("Signalling: join latency as participants connect")
    points = series.get("joins", {}).get("points") or []
    if points:
        clients, latency = zip(*points, strict=True)
        ax.scatter(clients, latency, s=4, color=OURS, alpha=0.35, linewidths=0, label="one join")
        window = max(len(points) // 20, 10)
        centres, p50, p99 = [], [], []
        for i in range(0, len(points), window):
            chunk = sorted(latency[i:i + window])
            centres.append(clients[min(i + window // 2, len(points) - 1)])
            p50.append(chunk[len(chunk) // 2])
            p99.append(chunk[min(len(chunk) - 1, int(len(chunk) * 0.99))])
        ax.plot(centres, p50, color=OURS, linewidth=2, label=f"p50 per {window} joins")
        ax.plot(centres, p99, color=JANUS, linewidth=2, label=f"p99 per {window} joins")
        rate = series["joins"].get("join_rate")
        _note(ax, f"{len(points)} joins paced at {rate:g}/s over the daphne processes" if rate else "")
        ax.set_xlabel("participants connected")
    elif rows:
        for marker, key, color in (("o", "join p50 ms", OURS), ("^", "join p99 ms", JANUS), ("x", "join max ms", GREY)):
            xs = [number(r["clients"]) for r in rows]
            ys = [number(r[key]) for r in rows]
            ax.plot(xs, ys, marker=marker, linestyle="-" if len(xs) > 1 else "none", color=color, markersize=8,
                    label=key.replace("join ", "").replace(" ms", ""))
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(f"{y:.0f} ms", (x, y), textcoords="offset points", xytext=(10, -3), fontsize=8,
                            color=color)
        ax.set_xlim(0, max(number(r["clients"]) for r in rows) * 1.15)
        _note(ax, "this run kept no per-join series: percentiles from the table")
        ax.set_xlabel("clients connected")
    ax.set_ylabel("ms from hello to state")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, loc="upper left")
    return fig


def draw(figures: Figures, out: Path = IMG) -> list[Path]:
    """Write every chart the figures allow into ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    charts: list[tuple[str, Figure | None]] = [
        ("cpu-per-packet.png", cpu_per_packet(figures.relay) if figures.relay else None),
        ("media-rooms.png", media_rooms(figures.media) if figures.media else None),
        ("soak-memory.png", soak_memory(figures.soak, figures.series)
         if figures.soak or figures.series.get("soak") else None),
        ("join-latency.png", join_latency(figures.signalling, figures.series)
         if figures.signalling or figures.series.get("joins") else None),
    ]
    written = []
    for name, fig in charts:
        if fig is None:
            logger.warning("no figures for %s: not drawn", name)
            continue
        path = out / name
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Draw the charts from docs/performance.md (and the raw series) into docs/img."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.charts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doc", type=Path, default=DOC, help="the Markdown file with the benchmark tables")
    parser.add_argument("--series", type=Path, default=SERIES, help="raw series kept by python -m benchmarks.load")
    parser.add_argument("--out", type=Path, default=IMG, help="directory for the PNG files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in draw(read(args.doc, args.series), args.out):
        logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
