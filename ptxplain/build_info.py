"""What this ptxplain is and runs on: versions from the installed packages' metadata (nothing is
imported, so the gateway, which runs without torch, can say them too). Shared by
``ptxplain --version``, the gateway's build-info metric and its protocol metadata."""

from __future__ import annotations

import platform
from importlib import metadata

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
        "version": package_version("ptxplain"),
        "torch": package_version("torch"),
        "torchserve": package_version("torchserve"),
        "python": platform.python_version(),
    }
