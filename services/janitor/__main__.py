"""``python -m services.janitor``: run the janitor."""

from __future__ import annotations

import sys

from services.cli.main import run_service

if __name__ == "__main__":
    sys.exit(run_service("janitor", sys.argv[1:]))
