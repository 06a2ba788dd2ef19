"""A local stand-in for ``python:3.11-slim-bookworm`` when no registry can serve it.

Built from Debian's own packages (``debootstrap --variant=minbase`` of bookworm with python3.11,
its venv module and the CA certificates), with ``python`` / ``python3`` on PATH and the host's
CA bundle (so pip inside a build trusts what the host trusts), then committed under the base
image's name. The Dockerfiles' ``PYTHON_IMAGE`` argument takes it unchanged. Debian's
python3.11 is 3.11.2 where the official image carries the newest 3.11 release; both are 3.11.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ptxplain.errors import ConfigError
from services.containers.engine import Engine, install_debian_packages

__all__ = ["BASE_IMAGE", "ensure_base_image", "make_stand_in"]

log = logging.getLogger(__name__)

BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
_MIRROR = "http://deb.debian.org/debian"
# python3.11-venv needs python3.11-distutils, which debootstrap does not resolve by itself.
_PACKAGES = "python3.11,python3.11-venv,python3-distutils,ca-certificates"
_HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
_CONFIG = (
    "--env",
    "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--env",
    "LANG=C.UTF-8",
    "--cmd",
    "python3",
    "--label",
    "org.opencontainers.image.description=ptxplain's local stand-in for "
    "python:3.11-slim-bookworm (debootstrap of Debian bookworm)",
)


def _run(command: list[str], timeout_s: float = 1800) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-800:]
        raise ConfigError(f"{' '.join(command[:3])} ... failed ({result.returncode}): {tail}")
    return result.stdout.strip()


def _debootstrap(root: Path, mirror: str) -> None:
    if shutil.which("debootstrap") is None:
        install_debian_packages(["debootstrap"])
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={_PACKAGES}",
            "bookworm",
            str(root),
            mirror,
        ]
    )
    for name in ("python", "python3"):
        link = root / "usr" / "local" / "bin" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to("/usr/bin/python3.11")
    if _HOST_CA.is_file():
        shutil.copy2(_HOST_CA, root / "etc" / "ssl" / "certs" / "ca-certificates.crt")
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    for lists in (root / "var" / "lib" / "apt" / "lists").glob("*_*"):
        lists.unlink()


def make_stand_in(engine: Engine, name: str = BASE_IMAGE, mirror: str = _MIRROR) -> float:
    """Build the stand-in and commit it as ``name``; the seconds it took."""
    if engine.kind != "buildah":
        raise ConfigError("the stand-in base image is made with buildah; install it or pull")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ptxplain-base-") as scratch:
        root = Path(scratch) / "rootfs"
        _debootstrap(root, mirror)
        tarball = Path(scratch) / "rootfs.tar"
        _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tarball), "."])
        container = _run([engine.binary, "from", "scratch"])
        try:
            _run([engine.binary, "add", container, str(tarball), "/"])
            _run([engine.binary, "config", *_CONFIG, container])
            _run([engine.binary, "commit", "--format", "docker", "--rm", container, name])
        except ConfigError:
            subprocess.run([engine.binary, "rm", container], capture_output=True, check=False)
            raise
    seconds = time.monotonic() - started
    log.info("made the stand-in %s from Debian's packages in %.0f s", name, seconds)
    return seconds


def ensure_base_image(engine: Engine, name: str = BASE_IMAGE, pull: bool = True) -> str:
    """``name`` present locally: already there, pulled, or (buildah) the stand-in made now.

    Returns how it came to be there: ``"present"``, ``"pulled"`` or ``"stand-in"``.
    """
    if engine.image_exists(name):
        return "present"
    if pull and engine.pull(name):
        return "pulled"
    if engine.kind != "buildah":
        raise ConfigError(f"cannot pull {name} and no buildah to make a stand-in")
    log.info("%s cannot be pulled: making a stand-in from Debian's packages", name)
    make_stand_in(engine, name)
    return "stand-in"
