"""``python -m taskstream.services.janitor`` (or ``taskstream janitor``): run the janitor."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from taskstream.services.janitor.service import serve
from taskstream.shared import runtime


def main(argv: Sequence[str] | None = None) -> int:
    return runtime.main("janitor", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
