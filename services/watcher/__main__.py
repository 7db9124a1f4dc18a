"""``python -m services.watcher``: run the watcher."""

from __future__ import annotations

import sys

from services.cli.main import run_service

if __name__ == "__main__":
    sys.exit(run_service("watcher", sys.argv[1:]))
