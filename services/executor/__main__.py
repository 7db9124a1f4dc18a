"""``python -m services.executor``: run an executor."""

from __future__ import annotations

import sys

from services.cli.main import run_service

if __name__ == "__main__":
    sys.exit(run_service("executor", sys.argv[1:]))
