"""``python -m taskstream.services.executor`` (or ``taskstream executor``): run an executor."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from taskstream.services.executor.service import serve
from taskstream.shared import runtime


def main(argv: Sequence[str] | None = None) -> int:
    return runtime.main("executor", serve, argv, flags={"burst": "exit once the streams are empty"})


if __name__ == "__main__":
    sys.exit(main())
