"""Build the gateway and model-server images (``make images`` / ``ptxplain images``).

With a Docker engine: ``docker build``. Without one: buildah (``bud --isolation chroot
--network host --format docker --layers``), with the base image made locally from Debian's
packages when no registry serves it (:mod:`services.containers.base_image`). The host's pip
configuration is handed to the build (:mod:`services.containers.host_pip`) so that pip inside
installs from where the host's pip does; and when PyTorch's CPU index (the model server's
default ``TORCH_INDEX_URL``) cannot be reached, the torch wheel comes from that configuration
too. Tags are those of docker-compose.yml. Each build's output goes to ``build/images/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ptxplain.errors import ConfigError
from services.containers.base_image import BASE_IMAGE, ensure_base_image
from services.containers.engine import Engine
from services.containers.host_pip import HostPip

__all__ = [
    "IMAGES",
    "BuildOptions",
    "Built",
    "ImageSpec",
    "build_image",
    "build_images",
    "image_size",
    "parse_size",
    "torch_index_url",
]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
_CONTAINERS = REPO / "services" / "containers"
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# One image build at a time on this machine (they share its CPUs and disk).
_LOCK = Path(tempfile.gettempdir()) / "ptxplain-image-build.lock"


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """One image: its Dockerfile, tag (as docker-compose.yml names it) and target stage."""

    name: str
    dockerfile: Path
    tag: str
    target: str | None = None
    uses_torch: bool = False


IMAGES = {
    "gateway": ImageSpec("gateway", _CONTAINERS / "gateway.Dockerfile", "ptxplain/gateway:0.1.0"),
    "model-server": ImageSpec(
        "model-server",
        _CONTAINERS / "model-server.Dockerfile",
        "ptxplain/model-server:cpu",
        target="mounted",
        uses_torch=True,
    ),
}


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How to build: the engine, the host's pip settings (None: none) and the torch index."""

    engine: Engine
    pip: HostPip | None = None
    # None: the Dockerfile's default (PyTorch's CPU index); "": wherever pip is configured.
    torch_index: str | None = None
    base_image: str = BASE_IMAGE
    log_dir: Path = REPO / "build" / "images"


@dataclasses.dataclass(frozen=True)
class Built:
    """One finished build."""

    spec: ImageSpec
    seconds: float
    size_bytes: int
    log: Path

    def summary(self) -> str:
        return f"{self.spec.tag}: {self.size_bytes / 1e9:.2f} GB, built in {self.seconds:.0f} s"


def _reachable(url: str, timeout_s: float = 10.0) -> bool:
    import requests

    try:
        return requests.head(url, timeout=timeout_s, allow_redirects=True).status_code < 500
    except requests.RequestException:
        return False


def torch_index_url(pip: HostPip | None, probe: bool = True) -> str | None:
    """PyTorch's CPU index when it answers; else, with the host's pip settings, "" (theirs)."""
    if pip is None or not probe or _reachable(CPU_TORCH_INDEX):
        return None
    log.info("%s does not answer: torch comes from the host's pip configuration", CPU_TORCH_INDEX)
    return ""


def _pip_options(engine: Engine, pip: HostPip, scratch: Path) -> list[str]:
    if engine.kind == "docker":
        return [f"--build-arg={key}={value}" for key, value in pip.build_args().items()]
    conf = scratch / "pip.conf"
    conf.write_text(pip.conf_text())
    volumes = [f"--volume={conf}:/etc/pip.conf:ro"]
    return volumes + [f"--volume={path}:{path}:ro" for path in pip.local_paths()]


def _command(spec: ImageSpec, options: BuildOptions, scratch: Path) -> list[str]:
    command = [*options.engine.build_command(), "--file", str(spec.dockerfile), "--tag", spec.tag]
    if spec.target:
        command += ["--target", spec.target]
    command += [f"--build-arg=PYTHON_IMAGE={options.base_image}"]
    if spec.uses_torch and options.torch_index is not None:
        command += [f"--build-arg=TORCH_INDEX_URL={options.torch_index}"]
    if options.pip is not None and options.pip.settings:
        command += _pip_options(options.engine, options.pip, scratch)
    return [*command, str(REPO)]


_UNITS = {"B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def parse_size(text: str) -> int:
    """buildah's human size (``"326 MB"``, decimal units) in bytes."""
    number, _, unit = text.strip().partition(" ")
    return round(float(number) * _UNITS[unit or "B"])


def image_size(engine: Engine, reference: str) -> int:
    """The image's size in bytes (its layers, uncompressed)."""
    if engine.kind == "docker":
        command = [engine.binary, "image", "inspect", "--format", "{{.Size}}", reference]
    else:
        command = [engine.binary, "images", "--json", reference]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    if engine.kind == "docker":
        return int(result.stdout.strip())
    return parse_size(json.loads(result.stdout)[0]["size"])


def _run_logged(command: list[str], log_path: Path, started: float) -> int:
    """Run ``command``, each output line written to ``log_path`` with the seconds elapsed."""
    with log_path.open("w") as out:
        out.write(" ".join(command) + "\n")
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                out.write(f"{time.monotonic() - started:7.1f}s {line}")
                out.flush()
        return process.wait()


def _working_containers(engine: Engine) -> set[str]:
    """buildah's build containers (``<image>-working-container``) present now."""
    if engine.kind != "buildah":
        return set()
    listed = subprocess.run(
        [engine.binary, "containers", "--all", "--format", "{{.ContainerName}}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return {n for n in listed.stdout.split() if n.endswith("-working-container")}


def _remove_left_behind(engine: Engine, before: set[str]) -> None:
    """buildah 1.28 leaves the last stage's container behind (and one of a failed step)."""
    left = sorted(_working_containers(engine) - before)
    if left:
        subprocess.run([engine.binary, "rm", *left], capture_output=True, timeout=600, check=False)


def build_image(spec: ImageSpec, options: BuildOptions) -> Built:
    """Build ``spec``; ConfigError naming the log when the build fails."""
    options.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = options.log_dir / f"{spec.name}.log"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ptxplain-build-") as scratch:
        command = _command(spec, options, Path(scratch))
        log.info("building %s: %s", spec.tag, " ".join(command))
        before = _working_containers(options.engine)
        returncode = _run_logged(command, log_path, started)
        _remove_left_behind(options.engine, before)
    seconds = time.monotonic() - started
    if returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
        raise ConfigError(f"building {spec.tag} failed (log: {log_path}):\n{tail}")
    return Built(spec, seconds, image_size(options.engine, spec.tag), log_path)


@contextlib.contextmanager
def _one_build_at_a_time() -> Iterator[None]:
    with _LOCK.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another image build runs on this machine; waiting for it (%s)", _LOCK)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_images(options: BuildOptions, names: Iterable[str] = IMAGES) -> Mapping[str, Built]:
    """The base image first (present, pulled or made), then each image, one at a time."""
    with _one_build_at_a_time():
        how = ensure_base_image(options.engine, options.base_image)
        log.info("base image %s: %s", options.base_image, how)
        return {name: build_image(IMAGES[name], options) for name in names}
