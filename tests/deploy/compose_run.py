"""docker-compose.yml's services as :class:`RunSpec` s: the compose file itself, exercised.

For one service: its image (its ENTRYPOINT, and the service's ``command`` in place of CMD),
``environment``, ``configs`` and ``secrets`` (mounted read-only at their targets; secrets under
``/run/secrets/``), bind ``volumes`` and ``tmpfs`` folders (fresh, world-writable folders here),
with ``${VAR:-default}`` interpolated as Compose does. Host paths the file names relative to
the project (``./model_store``, ``./run/compose/gateway-token``) can be replaced, so a test
mounts its own archives and token. Not reproduced: ``read_only``, ``cap_drop`` and
``security_opt`` (no such controls under chroot isolation), networks (one namespace for the
stack, as a pod), published ports (the client runs inside that namespace).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from services.containers.engine import Engine
from tests.deploy.image_runner import Mount, RunSpec, image_config
from tests.deploy.support import REPO

__all__ = ["COMPOSE", "compose_file", "service_names", "service_spec"]

COMPOSE = REPO / "docker-compose.yml"
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def compose_file() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``${NAME}`` / ``${NAME:-default}`` (empty or unset -> default), as Compose does."""
    return _VARIABLE.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), text)


def _host_path(source: str, replace: Mapping[str, Path]) -> Path:
    return replace[source] if source in replace else (REPO / source).resolve()


def _file_mounts(
    entries: list[Any], top: Mapping[str, Any], base: str, replace: Mapping[str, Path]
) -> list[Mount]:
    mounts = []
    for entry in entries:
        entry = {"source": entry} if isinstance(entry, str) else entry
        target = entry.get("target") or entry["source"]
        if not target.startswith("/"):
            target = f"{base}/{target}"
        mounts.append(Mount(_host_path(top[entry["source"]]["file"], replace), target))
    return mounts


def _volume_mounts(service: Mapping[str, Any], replace: Mapping[str, Path]) -> list[Mount]:
    mounts = []
    for volume in service.get("volumes", []):
        if volume["type"] != "bind":
            raise ValueError(f"only bind volumes are run here, not {volume['type']}")
        source = _host_path(volume["source"], replace)
        mounts.append(Mount(source, volume["target"], bool(volume.get("read_only", False))))
    return mounts


def _tmpfs_mounts(service: Mapping[str, Any], scratch: Path) -> list[Mount]:
    mounts = []
    for index, target in enumerate(service.get("tmpfs", [])):
        folder = scratch / f"tmpfs{index}"
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o1777)  # as a fresh tmpfs: writable by the image's user
        mounts.append(Mount(folder, target, read_only=False))
    return mounts


def service_names(compose: Mapping[str, Any], services: list[str]) -> tuple[str, ...]:
    """The names ``services`` answer to on their networks: service names and aliases."""
    names = list(services)
    for name in services:
        networks = compose["services"][name].get("networks", {})
        for network in networks.values() if isinstance(networks, dict) else ():
            names += (network or {}).get("aliases", [])
    return tuple(dict.fromkeys(names))


def service_spec(
    engine: Engine,
    name: str,
    scratch: Path,
    replace: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    hosts: tuple[str, ...] = (),
) -> RunSpec:
    """The compose service ``name`` as it would run; ``replace``: project paths -> host paths."""
    compose, replace = compose_file(), dict(replace or {})
    values = dict(os.environ if env is None else env)
    service = compose["services"][name]
    image = service["image"]
    config = image_config(engine, image)
    command = [interpolate(str(c), values) for c in service.get("command", config.cmd)]
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(e.split("=", 1) for e in environment)
    mounts = [
        *_file_mounts(service.get("configs", []), compose.get("configs", {}), "", replace),
        *_file_mounts(
            service.get("secrets", []), compose.get("secrets", {}), "/run/secrets", replace
        ),
        *_volume_mounts(service, replace),
        *_tmpfs_mounts(service, scratch / name),
    ]
    return RunSpec(
        image=image,
        command=(*config.entrypoint, *command),
        env={k: interpolate(str(v), values) for k, v in environment.items()},
        mounts=tuple(mounts),
        hosts=hosts,
        healthcheck=config.healthcheck,
    )
