"""The embedded default: phantom data -> a training profile -> one archive per checkpoint.

``make deploy`` runs this when ``model_store/`` holds no archive, so a fresh machine with no
data and no checkpoints still serves trained models through exactly the code path real data
takes. Every step skips what already exists: the phantom folder, finished checkpoints of this
very run (an interrupted one resumes) and archives built from them.

Provenance is enforced: a checkpoint trained on other data or with another recipe stops
training (see :mod:`harness.train.provenance`), and an archive whose model is not the
checkpoint's (other data, other recipe) stops archiving with both named, before anything is
replaced; ``force`` rebuilds it. A random-init archive (``ptxplain archive``) is kept, with a
notice, unless forced.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from handlers.archive import (
    DEVICE_NOTES,
    BuiltArchive,
    ServingOptions,
    WeightsSource,
    build_archive,
    read_archive_meta,
)
from handlers.placement import measure_costs, plan_lines, plan_workers
from harness.phantom.generate import PhantomConfig, generate_phantom
from harness.train.profiles import Profile
from harness.train.provenance import DataProvenance
from ptxplain.errors import ConfigError, InvalidOptionError
from ptxplain.machine import cpu_cores
from ptxplain.models.meta import META_FILENAME, ModelMeta

__all__ = [
    "DefaultModelsPlan",
    "archive_checkpoints",
    "check_store",
    "ensure_phantom",
    "plan_store_workers",
]

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DefaultModelsPlan:
    """Where each stage reads and writes."""

    data: Path
    checkpoints: Path
    model_store: Path
    profile: Profile
    # The archives' device (handlers/archive.py ServingOptions.device): auto = the server's GPU
    # where it has one.
    device: Literal["auto", "cpu", "gpu"] = "auto"
    # Workers per model: None = planned from the models' measured costs and ``cores``
    # (handlers/placement.py); a count = that many for every model.
    workers: int | None = None
    cores: int = dataclasses.field(default_factory=cpu_cores)
    serving: ServingOptions = dataclasses.field(default_factory=ServingOptions)


def ensure_phantom(plan: DefaultModelsPlan, say: Say) -> None:
    """Generate the profile's phantom set into ``plan.data`` unless a data set is there."""
    recipe = plan.profile.phantom
    if plan.data.exists() and any(plan.data.iterdir()):
        say(f"data: using {plan.data} (already there)")
        return
    if recipe is None:
        raise InvalidOptionError(
            f"profile {plan.profile.name!r} names no phantom recipe: give --data with a data set"
        )
    started = time.perf_counter()
    config = PhantomConfig(n=recipe.n, seed=recipe.seed, size=recipe.size)
    generate_phantom(config, plan.data)
    say(
        f"data: wrote a synthetic phantom set ({recipe.n} images, {recipe.size} px, seed "
        f"{recipe.seed}) to {plan.data} in {time.perf_counter() - started:.0f}s"
    )


def check_store(plan: DefaultModelsPlan, data: DataProvenance, say: Say) -> list[str]:
    """Every archive in the model store against ``data`` (the provenance of ``plan.data``):
    the archives trained on other data, one line each; random-init ones get a notice."""
    stale = []
    for archive in sorted(plan.model_store.glob("*.mar")):
        meta = read_archive_meta(archive)
        if not meta.trained:
            say(f"store: notice: {archive.name} serves random-init weights (untrained)")
        elif meta.data_fingerprint != data.fingerprint:
            stale.append(
                f"{archive} was trained on {meta.trained_on} (data fingerprint "
                f"{meta.data_fingerprint[:12] or 'none'}), not on {plan.data}: {data.label} "
                f"(fingerprint {data.fingerprint[:12]})"
            )
        else:
            say(f"store: {archive.name} trained on {meta.trained_on}, the data in {plan.data}")
    return stale


def _same_model(archived: ModelMeta, checkpoint: ModelMeta) -> bool:
    return (
        archived.trained
        and archived.data_fingerprint == checkpoint.data_fingerprint
        and archived.recipe.get("settings_key") == checkpoint.recipe.get("settings_key")
    )


def _stale(archive: Path, archived: ModelMeta, checkpoint: ModelMeta) -> str:
    return (
        f"{archive} serves a model trained on {archived.trained_on} (data fingerprint "
        f"{archived.data_fingerprint[:12] or 'none'}, recipe "
        f"{str(archived.recipe.get('settings_key', 'unrecorded'))[:12]}), but the checkpoint is "
        f"trained on {checkpoint.trained_on} (data fingerprint {checkpoint.data_fingerprint[:12]}, "
        f"recipe {str(checkpoint.recipe.get('settings_key', ''))[:12]})"
    )


def _keep_existing(archive: Path, checkpoint: ModelMeta, say: Say, force: bool) -> str | None:
    """Whether an existing archive stays: None to (re)build it, "" to keep it, or why it is
    stale (an error unless forced)."""
    if not archive.exists() or force:
        return None
    archived = read_archive_meta(archive)
    if _same_model(archived, checkpoint):
        say(f"archive: {archive} already there (trained on {archived.trained_on})")
        return ""
    if not archived.trained:
        say(
            f"archive: notice: {archive} serves random-init weights, not the checkpoint trained "
            f"on {checkpoint.trained_on}; kept (force rebuilds it)"
        )
        return ""
    return _stale(archive, archived, checkpoint)


def archive_checkpoints(
    plan: DefaultModelsPlan, say: Say, *, force: bool = False
) -> list[BuiltArchive]:
    """Archive every trained checkpoint of the profile whose archive is missing (or stale and
    ``force``); a stale archive without ``force`` is a ConfigError, raised before any build."""
    todo, stale = [], []
    for entry in plan.profile.entries:
        folder = plan.checkpoints / entry.arch
        archive = plan.model_store / f"{entry.arch}.mar"
        if not (folder / META_FILENAME).exists():
            say(f"archive: {entry.arch} has no finished checkpoint in {folder}; not archived")
            continue
        meta = ModelMeta.read(folder / META_FILENAME)
        verdict = _keep_existing(archive, meta, say, force)
        if verdict:
            stale.append(verdict)
        elif verdict is None:
            todo.append((entry.arch, folder, meta))
    if stale:
        raise ConfigError(
            " | ".join(stale) + ". Remove those archives, or rebuild them with --force "
            "(make deploy FORCE=1)"
        )
    if not todo:
        return []
    workers = plan_store_workers(plan, _finished(plan), say)
    return [_build(plan, arch, folder, meta, workers[arch], say) for arch, folder, meta in todo]


def _finished(plan: DefaultModelsPlan) -> dict[str, int]:
    """Every finished checkpoint of the profile: architecture -> input size."""
    found = {}
    for entry in plan.profile.entries:
        meta_path = plan.checkpoints / entry.arch / META_FILENAME
        if meta_path.exists():
            found[entry.arch] = ModelMeta.read(meta_path).input_size
    return found


def _runs_on_gpu(device: str) -> bool:
    if device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


def plan_store_workers(plan: DefaultModelsPlan, sizes: dict[str, int], say: Say) -> dict[str, int]:
    """Workers per architecture for the archives served together from ``plan.model_store``:
    ``plan.workers`` when given, one each where they will run on this machine's GPU, else
    planned from their costs on ``plan.cores`` (handlers/placement.py)."""
    if plan.workers is not None:
        say(f"workers: {plan.workers} per model (--workers {plan.workers})")
        return dict.fromkeys(sizes, plan.workers)
    if _runs_on_gpu(plan.device):
        say("workers: 1 per model (they run on this machine's GPU; CPU costs do not apply)")
        return dict.fromkeys(sizes, 1)
    serving = plan.serving
    say(
        f"workers: measuring {len(sizes)} models' cost per image (batch {serving.batch_size}, "
        f"{serving.torch_threads} torch thread(s))"
    )
    costs = measure_costs(
        {arch: (arch, size) for arch, size in sizes.items()},
        serving.batch_size,
        serving.torch_threads,
    )
    placements = plan_workers(costs, plan.cores, serving.torch_threads)
    for line in plan_lines(placements, plan.cores):
        say(line)
    return {p.model: p.workers for p in placements}


def _build(
    plan: DefaultModelsPlan, arch: str, folder: Path, meta: ModelMeta, workers: int, say: Say
) -> BuiltArchive:
    result = build_archive(
        arch,
        plan.model_store,
        weights=WeightsSource(checkpoint=folder / "weights.safetensors"),
        serving=dataclasses.replace(plan.serving, device=plan.device, workers=workers),
    )
    auroc = meta.metrics.get("val_auroc")
    quality = f", val AUROC {auroc:.3f}" if auroc is not None else ""
    say(
        f"archive: {result.path.name} ({result.size_bytes / 2**20:.0f} MiB, trained on "
        f"{meta.trained_on}{quality}) in {result.seconds:.1f}s"
    )
    say(f"archive: {result.path.name} runs on {DEVICE_NOTES[plan.device]} with {workers} worker(s)")
    return result
