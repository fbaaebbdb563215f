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
    """One handler on the root logger, in the configured format, for everything the process
    prints: the model libraries' own output is routed to it (:func:`route_library_output`)."""
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)
    route_library_output()


#: Libraries that give their root logger a stderr handler of their own (transformers also
#: stops propagation, except under CI=true): their lines came out twice, or only as plain
#: text, beside JSON logs.
_OWN_HANDLER_LIBRARIES = ("transformers", "huggingface_hub")


def route_library_output() -> None:
    """Send the model libraries' log records, and Python warnings, through the root logger's
    handler, and turn their progress bars off.

    transformers and huggingface_hub print warnings with handlers of their own; tqdm's
    "Loading weights" bars write straight to stderr. A server's log is read by machines
    (``logging.format: json``), not watched on a terminal: each of those lines would be one
    that does not parse. Warnings (``warnings.warn``) become ``py.warnings`` records.
    """
    # Both configure their loggers when first imported (the model code imports them anyway).
    from huggingface_hub.utils.tqdm import disable_progress_bars
    from transformers.utils import logging as tf_logging

    tf_logging.disable_default_handler()
    tf_logging.enable_propagation()
    tf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    disable_progress_bars()
    for name in _OWN_HANDLER_LIBRARIES:
        library = logging.getLogger(name)
        library.handlers[:] = []
        library.propagate = True
    logging.captureWarnings(True)


def redact_query(text: str, config: LoggingConfig, query_chars: int = 64) -> str | None:
    """Query text as a log line may show it (``logging.query``); ``query_chars``:
    ``tuning.limits.log_query_chars``."""
    if not text or config.query == "none":
        return None
    if config.query == "truncate":
        return text[:query_chars]
    return hashlib.sha256(text.encode()).hexdigest()[:16]
