"""Patient-level train / val / test split, made once per data folder and reused.

Images are grouped by (pseudonymous) patient, so no patient is in two splits. Patients are
stratified by label (a patient with any positive image is a positive patient), shuffled with a
fixed seed, and dealt greedily to the split furthest below its target image count (default
70/15/15). The split is written to :data:`SPLIT_FILENAME` beside the pseudonym key with a
fingerprint of the data (image ids, patients, labels, mask sizes, image sizes); a later run with
changed data is refused rather than silently re-split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from harness.data.dataset import Dataset, ImageRecord
from ptxplain.errors import ConfigError, InternalError, InvalidOptionError

__all__ = [
    "SPLITS",
    "SPLIT_FILENAME",
    "Split",
    "SplitConfig",
    "assign_splits",
    "fingerprint",
    "load_or_create_split",
]

SPLIT_FILENAME = "ptxplain-split.json"
SPLITS = ("train", "val", "test")
_FORMAT = "ptxplain-split/1"


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0

    def __post_init__(self) -> None:
        if (
            len(self.fractions) != 3
            or min(self.fractions) < 0
            or abs(sum(self.fractions) - 1) > 1e-6
        ):
            raise InvalidOptionError(
                f"--fractions {self.fractions}: need three non-negative numbers summing to 1"
            )


@dataclasses.dataclass(frozen=True)
class Split:
    config: SplitConfig
    fingerprint: str
    assignment: dict[str, str]  # image id -> split name

    def records(self, dataset: Dataset, name: str) -> list[ImageRecord]:
        return [r for r in dataset.records if self.assignment[r.image_id] == name]

    def counts(self, dataset: Dataset) -> dict[str, dict[str, int]]:
        return {name: _counts(self.records(dataset, name)) for name in SPLITS}


def _counts(records: list[ImageRecord]) -> dict[str, int]:
    return {
        "images": len(records),
        "patients": len({r.patient for r in records}),
        "positive": sum(int(r.label) for r in records),
    }


def fingerprint(dataset: Dataset) -> str:
    """SHA-256 over what a split depends on, in image-id order."""
    digest = hashlib.sha256()
    for r in sorted(dataset.records, key=lambda r: r.image_id):
        line = f"{r.image_id}\t{r.patient}\t{int(r.label)}\t{r.mask_pixels}\t{r.shape}\n"
        digest.update(line.encode())
    return digest.hexdigest()


def _patients_by_stratum(records: tuple[ImageRecord, ...]) -> dict[int, dict[str, list[str]]]:
    """stratum (1 = any positive image) -> patient -> image ids."""
    images: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        images[r.patient].append(r)
    strata: dict[int, dict[str, list[str]]] = {0: {}, 1: {}}
    for patient, recs in sorted(images.items()):
        strata[max(int(r.label) for r in recs)][patient] = [r.image_id for r in recs]
    return strata


def _deal(
    patients: dict[str, list[str]], rng: np.random.Generator, fractions: np.ndarray
) -> dict[str, str]:
    """Give each shuffled patient to the split with the largest image deficit."""
    targets = fractions * sum(len(ids) for ids in patients.values())
    have = np.zeros(len(SPLITS))
    assignment = {}
    names = list(patients)
    for index in rng.permutation(len(names)):
        ids = patients[names[index]]
        choice = int(np.argmax(targets - have))
        have[choice] += len(ids)
        assignment.update(dict.fromkeys(ids, SPLITS[choice]))
    return assignment


def assign_splits(dataset: Dataset, config: SplitConfig) -> dict[str, str]:
    """image id -> split name; deterministic for the same records and config."""
    rng = np.random.default_rng(config.seed)
    fractions = np.asarray(config.fractions, dtype=np.float64)
    assignment: dict[str, str] = {}
    for _, patients in sorted(_patients_by_stratum(dataset.records).items()):
        assignment.update(_deal(patients, rng, fractions))
    return assignment


def _check_disjoint(dataset: Dataset, assignment: dict[str, str]) -> None:
    where: dict[str, str] = {}
    for r in dataset.records:
        split = assignment[r.image_id]
        if where.setdefault(r.patient, split) != split:
            raise InternalError(f"patient {r.patient} is in both {where[r.patient]} and {split}")


def _write(path: Path, split: Split, dataset: Dataset) -> None:
    body = {
        "format": _FORMAT,
        "seed": split.config.seed,
        "fractions": list(split.config.fractions),
        "fingerprint": split.fingerprint,
        "counts": split.counts(dataset),
        "images": dict(sorted(split.assignment.items())),
    }
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the split file ({exc}); use --state-dir") from exc


def _read(path: Path) -> Split:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        if body.get("format") != _FORMAT:
            raise ValueError(f"format {body.get('format')!r}, expected {_FORMAT!r}")
        config = SplitConfig(tuple(body["fractions"]), int(body["seed"]))
        return Split(config, str(body["fingerprint"]), dict(body["images"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable split file ({exc}); delete it to re-split") from exc


def load_or_create_split(
    dataset: Dataset, state_dir: Path, config: SplitConfig | None = None
) -> Split:
    """The stored split if it matches the data (and ``config``, if given); else a new one."""
    path = state_dir / SPLIT_FILENAME
    current = fingerprint(dataset)
    if path.exists():
        split = _read(path)
        if split.fingerprint != current:
            raise ConfigError(
                f"{path}: made for different data (fingerprint {split.fingerprint[:12]}, now "
                f"{current[:12]}: images added, removed or relabelled); delete it to re-split"
            )
        if config is not None and config != split.config:
            raise ConfigError(
                f"{path}: made with {split.config}, not {config}; delete it to re-split"
            )
        _check_disjoint(dataset, split.assignment)
        return split
    chosen = config or SplitConfig()
    split = Split(chosen, current, assign_splits(dataset, chosen))
    _check_disjoint(dataset, split.assignment)
    _write(path, split, dataset)
    return split
