"""Build TorchServe model archives (``<name>.mar``) for registry architectures.

An archive holds::

    ptxplain_handler.py   the entry file (handlers/archive_entry.py): one class, Handler
    weights.safetensors   the state dict (random-init, or a local checkpoint)
    ptxplain-model.json   ModelMeta: architecture, input size, normalization, classes, ...
    train-digests.bin     the pixel digests of the training and validation images, when the
                          checkpoint's folder has them (ptxplain/imaging/digest.py)
    model-config.yaml     workers, batching, timeouts, device, and the ``ptxplain:`` section
    MAR-INF/MANIFEST.json written by torch-model-archiver

torch-model-archiver lays the files out (``--archive-format no-archive``, in a private temp
dir); the folder is then zipped with ZIP_STORED — weights barely compress, and deflating
hundreds of MB is the slow part of a stock archive build. The archive appears atomically.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Literal

from ptxplain.errors import ConfigError, WeightsError
from ptxplain.imaging.digest import DIGESTS_FILENAME, check_digest_file
from ptxplain.machine import WORKER_SETTINGS, check_worker_settings
from ptxplain.models.meta import META_FILENAME, ModelMeta
from ptxplain.models.registry import ArchSpec, get_spec, list_specs

__all__ = [
    "DEVICES",
    "DEVICE_NOTES",
    "ENTRY_FILENAME",
    "ENTRY_SOURCE",
    "MODEL_CONFIG_FILENAME",
    "WEIGHTS_FILENAME",
    "BuiltArchive",
    "ServingOptions",
    "WeightsSource",
    "build_all",
    "build_archive",
    "read_archive_file",
    "read_archive_meta",
]

ENTRY_FILENAME = "ptxplain_handler.py"
ENTRY_SOURCE = Path(__file__).with_name("archive_entry.py")
WEIGHTS_FILENAME = "weights.safetensors"
MODEL_CONFIG_FILENAME = "model-config.yaml"
DEVICES = ("auto", "cpu", "gpu")
# Where TorchServe 0.12 runs a model's workers, by the archive's deviceType (its Model class):
# none -> a GPU when it has any (number_of_gpu > 0), else the CPU; gpu -> the same; cpu -> CPU.
DEVICE_NOTES = {
    "auto": "the model server's GPU where it has one, else its CPU",
    "gpu": "the model server's GPU (its CPU where it has none)",
    "cpu": "the CPU",
}
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


_OPTIONAL_HANDLER_SETTINGS = ("autocast", "max_bytes", "max_pixels", *WORKER_SETTINGS)


@dataclasses.dataclass(frozen=True)
class ServingOptions:
    """How TorchServe serves the model (the archive's model-config YAML)."""

    batch_size: int = 8
    max_batch_delay_ms: int = 20
    workers: int = 1
    torch_threads: int = 1
    response_timeout_s: int = 120
    # auto: no deviceType in the archive, so TorchServe uses a GPU where it sees one (and the
    # CPU elsewhere); gpu: a GPU when the server has one; cpu: always the CPU.
    device: Literal["auto", "cpu", "gpu"] = "auto"
    max_bytes: int | None = None
    max_pixels: int | None = None
    # The forward pass in bfloat16 / float16 (the engine's autocast); None = float32.
    autocast: str | None = None
    # Handler settings left to the handler's defaults when None (handlers/torchserve_handler.py):
    # MiB of decodes shared with the host's other workers (0 = off), and the scheduler time slice
    # the worker asks for in ms (0 = the kernel's).
    decode_cache_mb: int | None = None
    cpu_slice_ms: int | None = None
    keep_freed_mb: int | None = None  # MiB of freed memory a worker keeps (0 = the allocator's way)
    # Engines of the host's workers computing at once (0 = no limit; None = the worker's cores).
    engines_at_once: int | None = None

    def __post_init__(self) -> None:
        counts = {
            "batch_size": self.batch_size,
            "workers": self.workers,
            "torch_threads": self.torch_threads,
            "response_timeout_s": self.response_timeout_s,
            "max_bytes": self.max_bytes or 1,
            "max_pixels": self.max_pixels or 1,
        }
        for name, value in counts.items():
            if value < 1:
                raise ConfigError(f"archive option {name} must be at least 1, got {value}")
        if self.max_batch_delay_ms < 1:  # TorchServe silently turns 0 into its default, 100
            raise ConfigError(f"max_batch_delay_ms must be >= 1, got {self.max_batch_delay_ms}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        check_worker_settings("archive option", self)
        if self.autocast not in (None, "bfloat16", "float16"):
            raise ConfigError(f"autocast must be bfloat16 or float16, got {self.autocast!r}")

    def model_config(self) -> dict[str, Any]:
        section: dict[str, int | str] = {"torch_threads": self.torch_threads}
        # Only the handler settings given: the others keep the handler's defaults.
        for name in _OPTIONAL_HANDLER_SETTINGS:
            value = getattr(self, name)
            if value is not None:
                section[name] = value
        device = {} if self.device == "auto" else {"deviceType": self.device}
        return {
            "minWorkers": self.workers,
            "maxWorkers": self.workers,
            "batchSize": self.batch_size,
            "maxBatchDelay": self.max_batch_delay_ms,
            "responseTimeout": self.response_timeout_s,
            **device,
            "ptxplain": section,
        }


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """A local checkpoint (with ``ptxplain-model.json`` beside it), or else random-init."""

    checkpoint: Path | None = None
    seed: int = 0
    input_size: int | None = None


@dataclasses.dataclass(frozen=True)
class BuiltArchive:
    name: str
    architecture: str
    path: Path
    size_bytes: int
    seconds: float


# -- weights ----------------------------------------------------------------------------------


def _expected_shapes(spec: ArchSpec, input_size: int) -> dict[str, tuple[int, ...]]:
    import torch

    with torch.device("meta"):
        model = spec.build(input_size)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _checkpoint_shapes(path: Path, arch: str) -> dict[str, tuple[int, ...]]:
    if path.suffix != ".safetensors":
        from ptxplain.models.weights import load_state_dict

        return {k: tuple(v.shape) for k, v in load_state_dict(path, arch).items()}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path} for {arch!r}: {exc}") from exc


def _check_fits(spec: ArchSpec, meta: ModelMeta, path: Path) -> None:
    """The checkpoint's keys and shapes must be exactly the architecture's."""
    expected = _expected_shapes(spec, meta.input_size)
    found = _checkpoint_shapes(path, spec.name)
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        raise WeightsError(
            f"checkpoint {path} does not fit architecture {spec.name!r} at input size "
            f"{meta.input_size}: missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shape {wrong[:3]}",
            model=spec.name,
        )


def _stage_checkpoint(spec: ArchSpec, source: WeightsSource, staging: Path) -> ModelMeta:
    checkpoint = source.checkpoint
    assert checkpoint is not None
    if not checkpoint.is_file():
        raise WeightsError(f"checkpoint {checkpoint} for architecture {spec.name!r} does not exist")
    meta_path = checkpoint.parent / META_FILENAME
    if not meta_path.is_file():
        raise WeightsError(
            f"checkpoint {checkpoint} for architecture {spec.name!r} has no {META_FILENAME} "
            f"beside it ({meta_path})"
        )
    meta = ModelMeta.read(meta_path)
    if meta.architecture != spec.name:
        raise WeightsError(
            f"{meta_path} describes architecture {meta.architecture!r}, not {spec.name!r}"
        )
    if source.input_size not in (None, meta.input_size):
        raise ConfigError(
            f"--input-size {source.input_size} contradicts {meta_path} (input_size "
            f"{meta.input_size}); the checkpoint's metadata decides"
        )
    _check_fits(spec, meta, checkpoint)
    _stage_digests(checkpoint.parent / DIGESTS_FILENAME, meta, staging)
    target = staging / WEIGHTS_FILENAME
    if checkpoint.suffix == ".safetensors":
        target.symlink_to(checkpoint.resolve())  # the archiver copies the content
    else:
        _convert_to_safetensors(checkpoint, target, spec.name)
    return meta


def _stage_digests(source: Path, meta: ModelMeta, staging: Path) -> None:
    """Copy the checkpoint's training digests, when it has them and they are the ones its
    metadata records."""
    if not source.is_file():
        return
    check_digest_file(source, meta.training_digests_sha256, model=meta.architecture)
    shutil.copyfile(source, staging / DIGESTS_FILENAME)


def _convert_to_safetensors(source: Path, target: Path, arch: str) -> None:
    from safetensors.torch import save_file

    from ptxplain.models.weights import load_state_dict

    state = {k: v.contiguous() for k, v in load_state_dict(source, arch).items()}
    save_file(state, str(target))


def _stage_random_init(spec: ArchSpec, source: WeightsSource, staging: Path) -> ModelMeta:
    import torch

    from ptxplain.models.weights import save_weights

    size = source.input_size or spec.input_size
    torch.manual_seed(source.seed)
    save_weights(spec.build(size), staging / WEIGHTS_FILENAME)
    return ModelMeta.for_spec(spec, size, weights_source=f"random-init (seed {source.seed})")


# -- archive ----------------------------------------------------------------------------------


def _archiver() -> str:
    local = Path(sys.executable).parent / "torch-model-archiver"
    found = str(local) if local.exists() else shutil.which("torch-model-archiver")
    if not found:
        raise ConfigError("torch-model-archiver is not installed next to this Python or on PATH")
    return found


def _extra_files(staging: Path) -> list[Path]:
    digests = staging / DIGESTS_FILENAME
    return [staging / META_FILENAME, *([digests] if digests.is_file() else [])]


def _run_archiver(name: str, staging: Path, export: Path, scratch: Path) -> Path:
    """torch-model-archiver --archive-format no-archive; returns the laid-out folder."""
    from importlib.metadata import version

    command = [
        _archiver(),
        *("--model-name", name, "--version", version("ptxplain")),
        *("--serialized-file", str(staging / WEIGHTS_FILENAME)),
        *("--handler", str(staging / ENTRY_FILENAME)),
        *("--extra-files", ",".join(str(p) for p in _extra_files(staging))),
        *("--config-file", str(staging / MODEL_CONFIG_FILENAME)),
        *("--archive-format", "no-archive", "--export-path", str(export), "--force"),
    ]
    # The archiver copies into $TMPDIR/<model name>: a private TMPDIR keeps builds apart.
    env = {**os.environ, "TMPDIR": str(scratch)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"torch-model-archiver failed for {name!r}: {done.stderr[-2000:]}")
    return export / name


def _zip_stored(folder: Path, target: Path) -> None:
    """Zip ``folder`` without compression; the archive appears atomically (hidden until then)."""
    partial = target.with_name(f".{target.name}.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    os.replace(partial, target)


def _stage(
    spec: ArchSpec, weights: WeightsSource, serving: ServingOptions, entry: Path, staging: Path
) -> None:
    import yaml

    staging.mkdir()
    if weights.checkpoint is not None:
        meta = _stage_checkpoint(spec, weights, staging)
    else:
        meta = _stage_random_init(spec, weights, staging)
    meta.write(staging / META_FILENAME)
    shutil.copyfile(entry, staging / ENTRY_FILENAME)
    config_text = yaml.safe_dump(serving.model_config(), sort_keys=False)
    (staging / MODEL_CONFIG_FILENAME).write_text(config_text)


def build_archive(
    arch: str,
    out_dir: Path,
    *,
    name: str | None = None,
    weights: WeightsSource | None = None,
    serving: ServingOptions | None = None,
    entry: Path = ENTRY_SOURCE,
) -> BuiltArchive:
    """Build ``out_dir/<name>.mar`` (name defaults to the architecture)."""
    started = time.perf_counter()
    spec = get_spec(arch)
    name = name or spec.name
    if not _MODEL_NAME.match(name):
        raise ConfigError(f"model name {name!r} must match {_MODEL_NAME.pattern}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"ptxplain-archive-{name}-") as tmp:
        root = Path(tmp)
        _stage(spec, weights or WeightsSource(), serving or ServingOptions(), entry, root / "in")
        (root / "scratch").mkdir()
        (root / "out").mkdir()
        folder = _run_archiver(name, root / "in", root / "out", root / "scratch")
        target = out_dir / f"{name}.mar"
        _zip_stored(folder, target)
    return BuiltArchive(
        name=name,
        architecture=spec.name,
        path=target,
        size_bytes=target.stat().st_size,
        seconds=time.perf_counter() - started,
    )


def build_all(
    out_dir: Path, serving: ServingOptions | None = None, seed: int = 0
) -> list[BuiltArchive]:
    """One random-init archive per registry architecture, at its default input size."""
    return [
        build_archive(spec.name, out_dir, weights=WeightsSource(seed=seed), serving=serving)
        for spec in list_specs()
    ]


def read_archive_file(archive: Path, member: str) -> bytes:
    """One file of an archive, e.g. ``MAR-INF/MANIFEST.json``."""
    with zipfile.ZipFile(archive) as opened:
        return opened.read(member)


def read_archive_meta(archive: Path) -> ModelMeta:
    """The :class:`ModelMeta` an archive serves with (its provenance included)."""
    try:
        return ModelMeta.from_json(read_archive_file(archive, META_FILENAME))
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{archive}: no readable {META_FILENAME} ({exc})") from exc
    except WeightsError as exc:
        raise WeightsError(f"{archive}: {exc.message}") from exc
