"""The embedded default: phantom data -> a training profile -> one archive per checkpoint.

``make deploy`` runs this when ``model_store/`` holds no archive, so a fresh machine with no
data and no checkpoints still serves trained models through exactly the code path real data
takes. Every step skips what already exists: the phantom folder, finished checkpoints (an
interrupted one resumes) and built archives.
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
)
from harness.phantom.generate import PhantomConfig, generate_phantom
from harness.train.profiles import Profile
from ptxplain.errors import InvalidOptionError
from ptxplain.models.meta import META_FILENAME, ModelMeta

__all__ = ["DefaultModelsPlan", "archive_checkpoints", "ensure_phantom"]

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


def archive_checkpoints(plan: DefaultModelsPlan, say: Say) -> list[BuiltArchive]:
    """Archive every trained checkpoint of the profile whose archive is missing."""
    built = []
    for entry in plan.profile.entries:
        folder = plan.checkpoints / entry.arch
        archive = plan.model_store / f"{entry.arch}.mar"
        if archive.exists():
            say(f"archive: {archive} already there")
            continue
        if not (folder / META_FILENAME).exists():
            say(f"archive: {entry.arch} has no finished checkpoint in {folder}; not archived")
            continue
        meta = ModelMeta.read(folder / META_FILENAME)
        result = build_archive(
            entry.arch,
            plan.model_store,
            weights=WeightsSource(checkpoint=folder / "weights.safetensors"),
            serving=ServingOptions(device=plan.device),
        )
        auroc = meta.metrics.get("val_auroc")
        say(
            f"archive: {result.path.name} ({result.size_bytes / 2**20:.0f} MiB, val AUROC "
            f"{auroc:.3f}) in {result.seconds:.1f}s"
            if auroc is not None
            else f"archive: {result.path.name} in {result.seconds:.1f}s"
        )
        say(f"archive: {result.path.name} runs on {DEVICE_NOTES[plan.device]}")
        built.append(result)
    return built
