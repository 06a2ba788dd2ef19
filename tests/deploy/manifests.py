"""Render the kustomize overlays with the pinned kubectl (kustomize built in), offline."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from typing import Any

import yaml

from tests.deploy.support import REPO, venv_tool

__all__ = ["OVERLAYS", "by_kind", "containers", "env_value", "one", "render", "render_dir"]

OVERLAYS = sorted(p.name for p in (REPO / "k8s" / "overlays").iterdir() if p.is_dir())


def render_dir(path: str) -> subprocess.CompletedProcess[str]:
    command = [str(venv_tool("kubectl")), "kustomize", path]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@functools.cache
def _rendered(overlay: str) -> str:
    result = render_dir(str(REPO / "k8s" / "overlays" / overlay))
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize k8s/overlays/{overlay} failed:\n{result.stderr}")
    return result.stdout


def render(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects (a fresh copy each call: tests may mutate them)."""
    return [obj for obj in yaml.safe_load_all(_rendered(overlay)) if obj]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def containers(deployment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from deployment["spec"]["template"]["spec"]["containers"]


def env_value(container: dict[str, Any], name: str) -> str | None:
    for item in container.get("env", []):
        if item["name"] == name:
            return item.get("value")
    return None
