"""State the replicas of one deployment share (``shared.url``): :mod:`sidecar.shared.store`."""

from sidecar.shared.store import SharedStore

__all__ = ["SharedStore"]
