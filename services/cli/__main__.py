"""``python -m services.cli`` / the ``taskstream`` console script."""

from __future__ import annotations

import sys

from taskstream.services.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
