"""Crash points for the crash tests.

``TASKSTREAM_CRASH_AT=<point>`` (or ``<point>:<n>``) makes the process SIGKILL itself the first
(or n-th) time it reaches ``crash_point("<point>")``: how the tests kill a watcher between its
XADD and its commit, or an executor between its commit and its XACK. Unset, a crash point costs
one comparison.
"""

from __future__ import annotations

import os
import signal

_point, _, _nth = os.environ.get("TASKSTREAM_CRASH_AT", "").partition(":")
_remaining = int(_nth or 1)


def crash_point(name: str) -> None:
    global _remaining
    if name != _point:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
