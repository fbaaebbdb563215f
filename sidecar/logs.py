"""Logging set-up: JSON lines (default) or text, and query redaction for request logs."""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from typing import Any

from sidecar.config import LoggingConfig
from sidecar.jsonutil import dumps

#: LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return dumps(out).decode()


def setup_logging(config: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)


def redact_query(text: str, config: LoggingConfig, query_chars: int = 64) -> str | None:
    """Query text as a log line may show it (``logging.query``); ``query_chars``:
    ``tuning.limits.log_query_chars``."""
    if not text or config.query == "none":
        return None
    if config.query == "truncate":
        return text[:query_chars]
    return hashlib.sha256(text.encode()).hexdigest()[:16]
