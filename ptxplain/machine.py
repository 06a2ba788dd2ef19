"""What this machine offers the process (torch-free, so every door can ask)."""

from __future__ import annotations

import os

__all__ = ["cpu_cores"]


def cpu_cores() -> int:
    """The cores this process may run on (its affinity), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
