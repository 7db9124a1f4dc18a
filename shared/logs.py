"""Logging setup: JSON lines (one stable event name each) when not on a terminal.

Modules log with ``logging.getLogger(__name__)``, ``%``-style arguments and
``extra={"event": "…"}``; only a service's ``__main__`` calls ``setup``.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import msgspec

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", record.name),
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "event":
                doc[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(doc).decode()


def setup(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure the root logger once for a process."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
