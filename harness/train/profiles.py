"""Named training profiles: which architectures to train, at what size, for how long.

``quick``: a CPU profile that ``make deploy`` runs on a fresh machine: five models across the
three study families (ResNet-18/34/50, VGG-16-BN, ViT-S/16) at a reduced input size, from
scratch unless ImageNet weights sit in the local caches, on the phantom set described by
:attr:`Profile.phantom` (``ptxplain phantom --n ... --size ... --seed ...``).

``study``: the nine study architectures at 224x224 from local ImageNet weights, meant for a GPU.

:func:`run_profile` trains the entries in turn into ``<out>/<arch>/``. A finished checkpoint
is skipped, an interrupted one resumed; images are read once per input size and shared.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from harness.train.config import is_finished, settings_key
from harness.train.data import TrainValRecords, read_train_val
from harness.train.provenance import check_finished
from harness.train.run import TrainConfig, TrainImages, TrainResult, images_at, train
from ptxplain.errors import ConfigError, InvalidOptionError

__all__ = [
    "PROFILES",
    "PhantomRecipe",
    "Profile",
    "ProfileEntry",
    "ProfileOutcome",
    "get_profile",
    "profile_configs",
    "run_profile",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ProfileEntry:
    """One architecture's settings within a profile (TrainConfig field values)."""

    arch: str
    input_size: int | None
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    patience: int = 5
    warmup_epochs: int = 1
    augment: bool = True
    zero_init_residual: bool = False
    # Another entry of the profile (trained before this one) to distil soft labels from.
    teacher: str | None = None
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    clip_grad: float | None = None


@dataclasses.dataclass(frozen=True)
class PhantomRecipe:
    """The phantom set a profile was tuned on (the ``ptxplain phantom`` options)."""

    n: int
    size: int
    seed: int

    def command(self, out: str) -> str:
        return f"ptxplain phantom --out {out} --n {self.n} --size {self.size} --seed {self.seed}"


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    description: str
    entries: tuple[ProfileEntry, ...]
    phantom: PhantomRecipe | None = None

    def __post_init__(self) -> None:
        earlier: set[str] = set()
        for entry in self.entries:
            if entry.teacher is not None and entry.teacher not in earlier:
                raise ConfigError(
                    f"profile {self.name}: {entry.arch}'s teacher {entry.teacher} is not an "
                    "earlier entry"
                )
            earlier.add(entry.arch)


def _study_entry(arch: str) -> ProfileEntry:
    vit = arch.startswith("vit_")
    return ProfileEntry(
        arch=arch,
        input_size=224,
        epochs=30,
        batch_size=32,
        lr=1e-4 if vit else 3e-4,
        weight_decay=0.05 if vit else 1e-4,
        patience=6,
    )


def _quick(arch: str, **settings: Any) -> ProfileEntry:
    """A quick-profile entry: 128 px (the phantom's own size; CAM grids 4x4 for the CNNs, 8x8
    for the ViT), batches of 16, no augmentation (the phantom already varies exposure, gamma,
    position, size and noise per image; on it, augmentation delayed learning from scratch by
    several epochs, see docs/train.md)."""
    values: dict[str, Any] = {"input_size": 128, "batch_size": 16, "augment": False, "patience": 6}
    return ProfileEntry(arch=arch, **(values | settings))


_STUDY_ARCHS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "vgg16",
    "vgg19",
    "vit_s16",
    "vit_b16",
    "vit_l16",
)

QUICK = Profile(
    name="quick",
    description="5 models (ResNet-18/34/50, VGG-16-BN, ViT-S/16) at 128 px on CPU; see docs/train.md",
    entries=(
        _quick("resnet18", epochs=12, lr=1e-3),
        _quick("resnet34", epochs=12, lr=1e-3),
        # From scratch it learns too slowly here (val AUROC 0.63 in 20 epochs); distilled from the
        # ResNet-18 above, mostly from its soft labels, it reaches 0.84 (docs/train.md).
        _quick(
            "resnet50",
            epochs=20,
            lr=1e-3,
            zero_init_residual=True,
            teacher="resnet18",
            distill_alpha=0.9,
            distill_temperature=4.0,
        ),
        _quick("vgg16_bn", epochs=6, lr=1e-4),
        _quick("vit_s16", epochs=12, lr=5e-5, weight_decay=0.05, warmup_epochs=2),
    ),
    phantom=PhantomRecipe(n=1200, size=128, seed=0),
)

STUDY = Profile(
    name="study",
    description="the 9 study architectures at 224 px from local ImageNet weights (GPU)",
    entries=tuple(_study_entry(arch) for arch in _STUDY_ARCHS),
)

PROFILES = {profile.name: profile for profile in (QUICK, STUDY)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise InvalidOptionError(f"--profile {name!r}: choose {', '.join(PROFILES)}") from None


def profile_configs(
    profile: Profile, base: TrainConfig, overrides: dict[str, Any]
) -> list[TrainConfig]:
    """One config per entry: ``base`` (data, out root, threads ...), the entry, then
    ``overrides`` (flags given on the command line win over the profile). ``augment`` is a
    bool here: it switches ``base.augment`` on or off."""
    configs = []
    for entry in profile.entries:
        values = dataclasses.asdict(entry) | overrides
        values["augment"] = dataclasses.replace(base.augment, enabled=values["augment"])
        values["out"] = base.out / entry.arch
        values["teacher"] = None if entry.teacher is None else base.out / entry.teacher
        values["profile"] = profile.name
        configs.append(dataclasses.replace(base, **values))
    return configs


@dataclasses.dataclass(frozen=True)
class ProfileOutcome:
    arch: str
    out: Path
    skipped: bool
    wall_seconds: float
    result: TrainResult | None


def _plan(configs: list[TrainConfig], records: TrainValRecords) -> list[bool]:
    """Per config: skip it (this very run is finished there)? Every finished folder holding
    another run is reported at once, before anything trains, unless forced."""
    skip, problems = [], []
    retrained: set[Path] = set()
    for config in configs:
        if config.teacher is not None and config.teacher in retrained:
            skip.append(False)  # its teacher changes: the student's recipe does too
            retrained.add(config.out)
            continue
        if not is_finished(config.out) or config.overwrite:
            skip.append(False)
            retrained.add(config.out)
            continue
        key = settings_key(config, records.fingerprint)
        try:
            hyper = config.hyperparameters()
            same = check_finished(config.out, records.provenance, key, hyper, force=config.force)
            skip.append(same)
            if not same:
                retrained.add(config.out)
        except ConfigError as exc:
            problems.append(exc.message)
    if problems:
        raise ConfigError(" | ".join(problems))
    return skip


def run_profile(configs: list[TrainConfig]) -> list[ProfileOutcome]:
    """Train each config in turn; skip identical finished runs, resume interrupted ones, stop
    (before training anything) at a finished one trained on other data or another recipe
    unless forced."""
    if not configs:
        return []
    records = read_train_val(configs[0].data, configs[0].read)
    cache: dict[int, TrainImages] = {}
    outcomes = []
    for config, skip in zip(configs, _plan(configs, records), strict=True):
        if skip:
            log.info(
                "%s: %s holds this very run (same data and recipe); skipped",
                config.arch,
                config.out,
            )
            outcomes.append(ProfileOutcome(config.arch, config.out, True, 0.0, None))
            continue
        started = time.perf_counter()
        if config.size not in cache:
            cache[config.size] = images_at(records, config.size, config.progress)
        result = train(dataclasses.replace(config, resume=True), cache[config.size])
        outcomes.append(
            ProfileOutcome(config.arch, config.out, False, time.perf_counter() - started, result)
        )
    return outcomes
