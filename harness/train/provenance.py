"""What a checkpoint was trained on, and whether a finished one is the run asked for now.

:class:`DataProvenance` names the data set (``phantom`` for the synthetic phantom, recognised by
its ``phantom-truth.json``; otherwise the folder's name), says whether it is synthetic, and holds
the data + split fingerprint and a SHA-256 of the training images' ids. Training writes it, with
the recipe, into the checkpoint's :class:`~ptxplain.models.meta.ModelMeta`.

:func:`check_finished` decides what to do with a folder that already holds a trained model:
an identical run (same data fingerprint and settings key) is skipped; anything else stops with a
:class:`~ptxplain.errors.ConfigError` that names the difference (data set, fingerprint, or each
hyperparameter that changed) unless ``force``, which retrains.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ptxplain.errors import ConfigError
from ptxplain.models.meta import META_FILENAME, ModelMeta

__all__ = [
    "PHANTOM_MARKER",
    "DataProvenance",
    "check_finished",
    "differences",
    "ids_sha256",
    "provenance_of",
]

PHANTOM_MARKER = "phantom-truth.json"  # written by harness.phantom.generate


@dataclasses.dataclass(frozen=True)
class DataProvenance:
    dataset: str
    synthetic: bool
    fingerprint: str
    train_ids_sha256: str

    @property
    def label(self) -> str:
        return f"{self.dataset} (synthetic)" if self.synthetic else self.dataset


def ids_sha256(image_ids: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for image_id in sorted(image_ids):
        digest.update(f"{image_id}\n".encode())
    return digest.hexdigest()


def provenance_of(root: Path, fingerprint: str, train_ids: Iterable[str]) -> DataProvenance:
    synthetic = (root / PHANTOM_MARKER).is_file()
    name = "phantom" if synthetic else (root.resolve().name or str(root))
    return DataProvenance(name, synthetic, fingerprint, ids_sha256(train_ids))


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def differences(
    meta: ModelMeta, data: DataProvenance, key: str, hyperparameters: dict[str, Any]
) -> list[str]:
    """Why the finished model ``meta`` is not the run asked for (empty: it is)."""
    if meta.data_fingerprint != data.fingerprint:
        was = meta.trained_on if meta.dataset else "data without a recorded name"
        return [
            f"it was trained on {was} (data fingerprint {meta.data_fingerprint[:12] or 'none'}), "
            f"this run is on {data.label} (fingerprint {data.fingerprint[:12]})"
        ]
    if meta.recipe.get("settings_key") == key:
        return []
    recorded = meta.recipe.get("hyperparameters")
    if not isinstance(recorded, dict):
        return ["it records no recipe (trained before recipes were recorded)"]
    changed = _changed(recorded, hyperparameters)
    return [f"recipe: {', '.join(changed)}" if changed else "recipe: the settings key differs"]


def check_finished(
    out: Path, data: DataProvenance, key: str, hyperparameters: dict[str, Any], *, force: bool
) -> bool:
    """For a folder holding a trained model: True to skip it (identical run), False to retrain
    (``force``); otherwise :class:`ConfigError` naming the difference."""
    meta = ModelMeta.read(out / META_FILENAME)
    why = differences(meta, data, key, hyperparameters)
    if not why:
        return True
    if force:
        return False
    raise ConfigError(
        f"{out} holds a model that is not this run: {'; '.join(why)}. Use --force to retrain "
        "it here, or choose another --out"
    )
