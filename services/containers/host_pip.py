"""The host's pip configuration, handed to an image build without changing the Dockerfiles.

``pip config list`` (every config file plus ``PIP_*`` variables) gives the settings that say
where packages come from: index URLs, find-links, the trust store, a constraint file. They
are written into one ``pip.conf``, mounted as ``/etc/pip.conf`` in each build step, together
with every local path those settings name (a ``file://`` index with the folder above it, where
its pages link to, a wheel folder, a CA bundle), read-only at the same path. pip inside the build then installs what the host's pip would,
from the same places (a local wheel is copied, never fetched again). buildah mounts them with
``--volume``; a Docker build cannot mount host paths, so it gets the URL settings as
``PIP_*`` build arguments only (docs/containers.md).
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["HostPip", "host_pip", "parse_config_list"]

# Settings that say where packages come from and whom to trust; other settings stay out.
_LIST_KEYS = ("extra-index-url", "find-links", "trusted-host")
_KEYS = ("index-url", *_LIST_KEYS, "cert", "client-cert", "constraint")
_PATH_KEYS = ("index-url", "extra-index-url", "find-links", "cert", "client-cert", "constraint")
_LINE = re.compile(r"^(?P<scope>[^.]*)\.(?P<key>[a-z-]+)=(?P<value>.*)$")


def parse_config_list(text: str) -> dict[str, str]:
    """``pip config list`` output -> ``{key: value}``; ``:env:`` over ``install.`` over ``global.``."""
    rank = {"global": 0, "install": 1, ":env:": 2}
    found: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match is None or match["key"] not in _KEYS or match["scope"] not in rank:
            continue
        value = str(ast.literal_eval(match["value"]))
        level = rank[match["scope"]]
        if match["key"] not in found or level >= found[match["key"]][0]:
            found[match["key"]] = (level, value)
    return {key: value for key, (_, value) in found.items()}


def _local_path(entry: str) -> Path | None:
    if entry.startswith("file:"):
        return Path(unquote(urlparse(entry).path))
    if "://" in entry or not entry.startswith("/"):
        return None
    return Path(entry)


@dataclasses.dataclass(frozen=True)
class HostPip:
    """The settings to hand over and the local paths they name."""

    settings: dict[str, str]

    def conf_text(self) -> str:
        lines = ["# the host's pip settings, handed to an image build (services/containers)"]
        lines += ["[global]", *(f"{key} = {value}" for key, value in self.settings.items())]
        return "\n".join(lines) + "\n"

    def local_paths(self) -> list[Path]:
        """Existing local files and folders named by the settings (mounted read-only)."""
        paths: dict[Path, None] = {}
        for key in _PATH_KEYS:
            for entry in self.settings.get(key, "").split():
                path = _local_path(entry)
                if path is not None and key.endswith("index-url"):
                    path = path.parent  # a local index links to files beside it (../files/)
                if path is not None and path.exists():
                    paths[path] = None
        return sorted(paths)

    def build_args(self) -> dict[str, str]:
        """``PIP_*`` for a build that cannot mount: remote URL settings only."""
        args = {}
        for key in ("index-url", "extra-index-url", "trusted-host"):
            remote = [e for e in self.settings.get(key, "").split() if _local_path(e) is None]
            if remote:
                args["PIP_" + key.upper().replace("-", "_")] = " ".join(remote)
        return args


def host_pip(python: str = sys.executable) -> HostPip:
    """What ``python -m pip config list`` says on this host (empty when pip cannot say)."""
    try:
        result = subprocess.run(
            [python, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return HostPip({})
    return HostPip(parse_config_list(result.stdout) if result.returncode == 0 else {})
