"""What this ptxplain is and runs on: its own version (``ptxplain.__version__``, also where the
sources are copied rather than installed, as in the gateway image) and those of the installed
torch and TorchServe from their package metadata (nothing is imported: the gateway runs without
torch). Shared by ``ptxplain --version``, the gateway's build-info metric and its protocol
metadata."""

from __future__ import annotations

import platform
from importlib import metadata

from ptxplain import __version__

__all__ = ["ABSENT", "package_version", "versions"]

ABSENT = "absent"


def package_version(name: str) -> str:
    """The installed version of ``name``, or ``"absent"``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ABSENT


def versions() -> dict[str, str]:
    """ptxplain's version and those of torch, TorchServe and Python beside it."""
    return {
        "version": __version__,
        "torch": package_version("torch"),
        "torchserve": package_version("torchserve"),
        "python": platform.python_version(),
    }
