"""Find or fetch the programs the test suite needs beyond Python packages, into
``.local/bin`` (``make test`` runs this first; ``python -m tools deps``).

- ``promtool`` (the alert rules' checks and unit tests): on PATH, else extracted from Debian's
  ``prometheus`` package with ``apt-get download`` + ``dpkg-deb -x`` (no root needed, no
  service installed or started).
- ``chromium`` (the console's browser tests, driven by Playwright): Debian's package at
  ``/usr/bin/chromium``, installed with ``apt-get install -y chromium`` (after ``apt-get
  update`` when the package lists do not know it) when running as root; Playwright's own
  browser downloads are never used.

Each is best effort: what cannot be found or fetched is reported in one line, and the tests
that need it say so when they are skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIR = Path(".local")
CHROMIUM = Path("/usr/bin/chromium")


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


def ensure_chromium(path: Path = CHROMIUM) -> Path | None:
    """Debian's chromium, installed with apt-get when missing and running as root; None (with
    one line saying why) when it cannot be had, and the browser tests skip saying so."""
    if path.exists():
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(
            f"deps: {path} missing and not root with apt-get to install it "
            "(run `apt-get install -y chromium`; the console's browser tests are skipped)"
        )
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        # A fresh machine's package lists may not know the package yet.
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env)
        done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not path.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        print(f"deps: apt-get install chromium failed: {' '.join(tail)}")
        return None
    print(f"deps: chromium installed at {path}")
    return path


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
    ensure_chromium()
    return 0
