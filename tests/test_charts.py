"""benchmarks/charts.py: the benchmark tables and raw series become the PNGs docs/performance.md shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from benchmarks import charts

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

RELAY = """
| K | server | pkts/s | frames/s | expected | relay CPU | us/pkt | lat p50 ms | lat p99 ms | client CPU | players ok |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| 20 | ours | 3490 | 600 | 600 | 8.3% | 23.8 | 1.2 | 2.8 | 10.0% | 20/20 |
| 20 | janus | 3490 | 600 | 600 | 7.2% | 20.6 | 1.4 | 5.1 | 11.1% | 20/20 |
| 20 | ours/janus |  | 1.00 |  |  | 1.15 |  |  |  |  |

Targets (issue 3):
"""


def test_markdown_table_reads_rows_by_header() -> None:
    """A table is found by its first headers and read up to its last row; cells become numbers."""
    rows = charts.markdown_table(RELAY, ["K", "server", "pkts/s"])
    assert [(r["server"], charts.number(r["us/pkt"])) for r in rows] == [
        ("ours", 23.8), ("janus", 20.6), ("ours/janus", 1.15)]
    assert charts.number("8.3%") == 8.3 and charts.number("**0**") == 0 and charts.number("+1.24") == 1.24
    assert charts.markdown_table(RELAY, ["rooms"]) == []


def test_charts_from_the_committed_figures(tmp_path: Path) -> None:
    """The four charts are drawn from docs/performance.md as committed, and the doc shows each of them."""
    figures = charts.read(ROOT / "docs" / "performance.md", tmp_path / "no-series.json")
    assert figures.relay and figures.media and figures.signalling and figures.soak
    written = charts.draw(figures, tmp_path)
    names = sorted(path.name for path in written)
    assert names == ["cpu-per-packet.png", "join-latency.png", "media-rooms.png", "soak-memory.png"]
    for path in written:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
    doc = (ROOT / "docs" / "performance.md").read_text()
    shown = set(re.findall(r"!\[[^\]]*\]\(img/([\w.-]+\.png)\)", doc))
    assert shown == set(names)
    assert all((ROOT / "docs" / "img" / name).is_file() for name in names)


def test_raw_series_are_kept_and_drawn(tmp_path: Path) -> None:
    """Raw series written by the load benchmark are merged per part and drawn point by point."""
    series = tmp_path / "series.json"
    charts.update_series(series, {"soak": {"seconds": 60, "population": 10,
                                           "samples": [[i / 10, 200 + i * 0.5] for i in range(40)]}})
    charts.update_series(series, {"joins": {"clients": 100, "join_rate": 40,
                                            "points": [[i, 20 + (i % 7)] for i in range(1, 101)]}})
    kept = json.loads(series.read_text())
    assert set(kept) == {"soak", "joins"} and len(kept["soak"]["samples"]) == 40
    figure = charts.join_latency([], kept)
    axes = figure.axes[0]
    assert np.asarray(axes.collections[0].get_offsets()).shape[0] == 100  # one dot per join
    soak = charts.soak_memory([], kept)
    labels = [str(line.get_label()) for line in soak.axes[0].get_lines()]
    assert any("+5.00 MB/min" in label for label in labels), labels
