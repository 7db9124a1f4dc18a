"""Find or fetch the programs the test suite needs beyond Python packages, into
``.local/bin`` (``make test`` runs this first; ``python -m tools deps``).

- ``promtool`` (the alert rules' checks and unit tests): on PATH, else extracted from Debian's
  ``prometheus`` package with ``apt-get download`` + ``dpkg-deb -x`` (no root needed, no
  service installed or started).

Each is best effort: what cannot be found or fetched is reported in one line, and the tests
that need it say so when they are skipped.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIR = Path(".local")


def bin_dir(state_dir: Path = DEFAULT_DIR) -> Path:
    return (state_dir / "bin").resolve()


def ensure_promtool(state_dir: Path = DEFAULT_DIR) -> Path | None:
    """The path of a working promtool, fetching it when needed; None if it cannot be had."""
    target = bin_dir(state_dir) / "promtool"
    for candidate in (shutil.which("promtool"), str(target)):
        if candidate and Path(candidate).exists() and _works(Path(candidate)):
            return Path(candidate)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        print("deps: promtool not found and no apt-get to fetch it (alert rule checks skipped)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["apt-get", "download", "prometheus"], cwd=tmp, capture_output=True, text=True
        )
        debs = list(Path(tmp).glob("prometheus_*.deb"))
        if done.returncode != 0 or not debs:
            print(f"deps: could not download Debian's prometheus package: {done.stderr.strip()}")
            return None
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "x")], check=True)
        found = Path(tmp) / "x" / "usr" / "bin" / "promtool"
        if not found.exists():
            print("deps: Debian's prometheus package holds no promtool")
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found, target)
    if not _works(target):
        print("deps: the fetched promtool does not run")
        return None
    print(f"deps: promtool at {target}")
    return target


def _works(path: Path) -> bool:
    try:
        return (
            subprocess.run([str(path), "--version"], capture_output=True, timeout=20).returncode
            == 0
        )
    except OSError:
        return False


def deps_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools deps", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(list(argv))
    ensure_promtool(args.state_dir)
    return 0
