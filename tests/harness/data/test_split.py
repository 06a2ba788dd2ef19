"""Patient-level split and pseudonyms: disjoint, stratified, reused, refused on changed data."""

from __future__ import annotations

import dataclasses
import json
import stat
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness.data.dataset import Dataset, EmptyMask, ImageRecord, Label, SkipLog, summarize
from harness.data.pseudonym import KEY_FILENAME, Pseudonymizer, load_or_create_key
from harness.data.split import (
    SPLIT_FILENAME,
    SPLITS,
    SplitConfig,
    assign_splits,
    fingerprint,
    load_or_create_split,
)
from ptxplain.errors import ConfigError, InvalidOptionError


def _dataset(n_patients: int = 120, seed: int = 0) -> Dataset:
    """Patients with 1-4 images each; about a third of the patients positive."""
    rng = np.random.default_rng(seed)
    records = []
    for p in range(n_patients):
        positive = rng.random() < 0.33
        for k in range(int(rng.integers(1, 5))):
            label = Label.POSITIVE if positive and k == 0 else Label.NEGATIVE
            records.append(
                ImageRecord(
                    f"img-{p:03d}-{k}",
                    Path(f"{p}-{k}.dcm"),
                    f"p-{p:03d}",
                    label,
                    (8, 8),
                    int(label) * 5,
                    EmptyMask((8, 8)),
                )
            )
    return summarize("test", Path("."), records, SkipLog(strict=False))


def _patient_splits(dataset: Dataset, assignment: dict[str, str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for r in dataset.records:
        found.setdefault(r.patient, set()).add(assignment[r.image_id])
    return found


def test_no_patient_in_two_splits_and_fractions_near_target() -> None:
    dataset = _dataset()
    assignment = assign_splits(dataset, SplitConfig())
    assert set(assignment) == {r.image_id for r in dataset.records}
    assert all(len(s) == 1 for s in _patient_splits(dataset, assignment).values())
    counts = Counter(assignment.values())
    n = len(dataset.records)
    for name, target in zip(SPLITS, (0.7, 0.15, 0.15), strict=True):
        assert abs(counts[name] / n - target) < 0.05, counts


def test_stratified_by_label() -> None:
    dataset = _dataset(n_patients=300)
    assignment = assign_splits(dataset, SplitConfig())
    rate = {
        name: np.mean([int(r.label) for r in dataset.records if assignment[r.image_id] == name])
        for name in SPLITS
    }
    assert max(rate.values()) - min(rate.values()) < 0.05, rate


def test_deterministic_and_seed_dependent() -> None:
    dataset = _dataset()
    assert assign_splits(dataset, SplitConfig(seed=1)) == assign_splits(
        dataset, SplitConfig(seed=1)
    )
    assert assign_splits(dataset, SplitConfig(seed=1)) != assign_splits(
        dataset, SplitConfig(seed=2)
    )


def test_split_file_is_written_reused_and_checked(tmp_path: Path) -> None:
    dataset = _dataset()
    first = load_or_create_split(dataset, tmp_path)
    body = json.loads((tmp_path / SPLIT_FILENAME).read_text())
    assert body["fingerprint"] == fingerprint(dataset) and body["seed"] == 0
    assert body["images"] == first.assignment
    assert sum(c["images"] for c in body["counts"].values()) == len(dataset.records)
    # A later run reuses the file, even when asked with the same explicit config.
    assert load_or_create_split(dataset, tmp_path, SplitConfig()).assignment == first.assignment
    with pytest.raises(ConfigError, match="made with"):
        load_or_create_split(dataset, tmp_path, SplitConfig(seed=5))


def test_changed_data_is_refused(tmp_path: Path) -> None:
    dataset = _dataset()
    load_or_create_split(dataset, tmp_path)
    relabelled = list(dataset.records)
    relabelled[0] = dataclasses.replace(relabelled[0], label=Label(1 - relabelled[0].label))
    changed = summarize("test", Path("."), relabelled, SkipLog(strict=False))
    with pytest.raises(ConfigError, match="made for different data"):
        load_or_create_split(changed, tmp_path)
    fewer = summarize("test", Path("."), list(dataset.records[1:]), SkipLog(strict=False))
    with pytest.raises(ConfigError, match="delete it to re-split"):
        load_or_create_split(fewer, tmp_path)


def test_bad_split_file_and_bad_fractions(tmp_path: Path) -> None:
    (tmp_path / SPLIT_FILENAME).write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable split file"):
        load_or_create_split(_dataset(), tmp_path)
    with pytest.raises(InvalidOptionError, match="--fractions"):
        SplitConfig((0.8, 0.3, 0.1))


def test_pseudonyms_are_keyed_stable_and_hide_the_id(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path)
    again = load_or_create_key(tmp_path)
    other = load_or_create_key(tmp_path / "other")
    name = first("SECRET-PID-0042")
    assert name == again("SECRET-PID-0042") != other("SECRET-PID-0042")
    assert name.startswith("p-") and len(name) == 18 and "0042" not in name
    assert first("SECRET-PID-0043") != name
    mode = stat.S_IMODE((tmp_path / KEY_FILENAME).stat().st_mode)
    assert mode == 0o600
    assert "hidden" in repr(first) and (tmp_path / KEY_FILENAME).read_text().strip() not in repr(
        first
    )


def test_short_or_unreadable_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shorter"):
        Pseudonymizer(b"short")
    (tmp_path / KEY_FILENAME).write_text("zz-not-hex")
    with pytest.raises(ConfigError, match="unreadable pseudonym key"):
        load_or_create_key(tmp_path)
