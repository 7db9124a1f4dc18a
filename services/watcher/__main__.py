"""``python -m taskstream.services.watcher`` (or ``taskstream watcher``): run the watcher."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from taskstream.services.watcher.service import serve
from taskstream.shared import runtime


def main(argv: Sequence[str] | None = None) -> int:
    return runtime.main("watcher", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
