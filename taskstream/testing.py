"""Test helpers for applications: run a handler with a real ``Context`` and record the tasks it
submits, without Redis, Postgres or an API (see ``taskstream.shared.testing``)."""

from __future__ import annotations

from taskstream.shared.testing import (
    AsyncRecorder,
    PayloadError,
    Recorder,
    Run,
    Submitted,
    run,
    run_sync,
)

__all__ = ["AsyncRecorder", "PayloadError", "Recorder", "Run", "Submitted", "run", "run_sync"]
