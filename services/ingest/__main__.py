"""``python -m taskstream.services.ingest`` (or ``taskstream ingest``): run the ingest HTTP API."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from taskstream.services.ingest.service import check, serve
from taskstream.shared import runtime


def main(argv: Sequence[str] | None = None) -> int:
    return runtime.main("ingest", serve, argv, check=check)


if __name__ == "__main__":
    sys.exit(main())
