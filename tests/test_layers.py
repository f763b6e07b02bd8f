"""The import contracts of .importlinter hold on the tree, and a forbidden import is caught (lint-imports)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT

PACKAGES = ("conference", "rooms", "media_relay", "roomapi")
# The lint-imports command, run by this interpreter (no PATH lookup).
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the packages under ``tree`` with the repository's contracts (no cache written)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, str(ROOT / ".importlinter"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120,
    )


def test_the_tree_keeps_every_import_contract() -> None:
    """Layers point one way, the SDK stands alone, no package has an import cycle."""
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_media_relay_importing_rooms_breaks_the_layers(tmp_path: Path) -> None:
    """A copy of the tree where media_relay imports rooms (inside a function, even) fails the layers contract."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    reaper = tmp_path / "media_relay" / "reaper.py"
    reaper.write_text(
        reaper.read_text() + "\n\ndef _shortcut() -> None:\n    from rooms import services  # noqa: F401\n"
    )
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "media_relay.reaper -> rooms.services" in result.stdout, result.stdout
    assert "Layers point one way: conference -> rooms -> media_relay BROKEN" in result.stdout, result.stdout
