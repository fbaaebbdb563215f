"""Process lifecycle shared between the app and whoever runs it (the CLI, tests).

A background start-up step that fails for good (the model weights cannot be loaded) asks
the process to stop with a reason instead of serving forever without a model.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("sidecar")


class Lifecycle:
    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.fatal: str | None = None

    def fail(self, reason: str) -> None:
        log.critical("fatal: %s; shutting down", reason)
        self.fatal = reason
        self.stop.set()
