"""Process lifecycle shared between the app and whoever runs it (the CLI, tests).

A background start-up step that fails for good (a model configuration that cannot work, or
a load failure with ``model.on_load_failure: exit``) asks the process to stop, with a
reason and an exit code, instead of serving without a model.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("sidecar")


class Lifecycle:
    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.fatal: str | None = None
        #: The process's exit code after a fatal failure (3: start-up failed, 2: config).
        self.exit_code = 0

    def fail(self, reason: str, exit_code: int = 3) -> None:
        log.critical("fatal: %s; shutting down", reason)
        self.fatal = reason
        self.exit_code = exit_code
        self.stop.set()
