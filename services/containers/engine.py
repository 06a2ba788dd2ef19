"""Which container tool builds and runs the images here: a Docker engine, or buildah.

``docker`` is used when its engine answers (``docker info``). Otherwise buildah, which builds
and runs without a daemon (``--isolation chroot``: no user namespaces, cgroups or rlimits
needed, so it works inside unprivileged sandboxes where ``podman run`` cannot start anything).
On Debian, run as root, a missing buildah (and debootstrap, for the stand-in base image) is
installed with apt-get when :func:`find_engine` is asked to.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence

from ptxplain.errors import ConfigError

__all__ = ["Engine", "EngineMissing", "find_engine", "install_debian_packages"]

log = logging.getLogger(__name__)

# buildah's default OCI format drops HEALTHCHECK; the Docker format keeps it.
_BUILDAH_BUILD = ("bud", "--isolation", "chroot", "--network", "host", "--format", "docker")


class EngineMissing(ConfigError):
    """Neither a Docker engine nor buildah can be had on this machine."""


@dataclasses.dataclass(frozen=True)
class Engine:
    """One container tool: ``docker`` (with its engine) or ``buildah``."""

    kind: str
    binary: str

    def build_command(self) -> list[str]:
        """``docker build`` / ``buildah bud ...``, before the per-build options."""
        if self.kind == "docker":
            return [self.binary, "build"]
        return [self.binary, *_BUILDAH_BUILD, "--layers"]

    def image_exists(self, reference: str) -> bool:
        subcommand = (
            ["image", "inspect"] if self.kind == "docker" else ["inspect", "--type", "image"]
        )
        result = subprocess.run(
            [self.binary, *subcommand, reference], capture_output=True, timeout=120, check=False
        )
        return result.returncode == 0

    def pull(self, reference: str, timeout_s: float = 120.0) -> bool:
        """Whether ``reference`` could be pulled from its registry."""
        try:
            result = subprocess.run(
                [self.binary, "pull", "--quiet", reference],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log.info("pulling %s took over %.0f s; giving up", reference, timeout_s)
            return False
        if result.returncode != 0:
            log.info("cannot pull %s: %s", reference, result.stderr.strip()[-300:])
        return result.returncode == 0


def _docker_answers(binary: str) -> bool:
    try:
        result = subprocess.run([binary, "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def install_debian_packages(packages: Sequence[str]) -> None:
    """``apt-get install`` the ``packages`` (root on Debian only); ConfigError when it fails."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise EngineMissing(
            f"{' and '.join(packages)} missing, and apt-get cannot install them here "
            "(it needs root on a Debian-like system)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("installing %s with apt-get", " ".join(packages))
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if result.returncode != 0:
            raise EngineMissing(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")


def find_engine(docker: str = "docker", install: bool = False) -> Engine:
    """Docker when its engine answers, else buildah (apt-installed when ``install``)."""
    found = shutil.which(docker)
    if found is not None and _docker_answers(found):
        return Engine("docker", found)
    if shutil.which("buildah") is None and install:
        install_debian_packages(["buildah"])
    buildah = shutil.which("buildah")
    if buildah is None:
        raise EngineMissing(
            f"no container engine: '{docker} info' does not answer and buildah is not installed"
        )
    return Engine("buildah", buildah)
