"""The shortcut study: heat shares and the positive rate of drained negatives on hand-made
cases, the detection rule, and a tiny end-to-end run (phantoms, one epoch, evaluation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.metrics.stats import Interval
from harness.study.shortcut import (
    RESULT_NAME,
    ShortcutConfig,
    _Case,
    _detected,
    _split_block,
    _train_config,
    run_shortcut,
)
from ptxplain.errors import InvalidOptionError


def _case(label: int, drained: bool, image_id: str) -> _Case:
    lesion = np.zeros((8, 8), dtype=bool)
    drain = np.zeros((8, 8), dtype=bool)
    if label:
        lesion[0:2, 0:2] = True
    if drained:
        drain[6:8, :] = True  # a quarter of the image
    return _Case(image_id, label, np.zeros((8, 8), np.float32), lesion, drain)


def test_a_model_that_looks_at_the_drain() -> None:
    cases = [
        _case(1, True, "p1"),
        _case(1, False, "p2"),
        _case(0, True, "n1"),
        _case(0, False, "n2"),
    ]
    # It calls every drained image positive and puts all its heat on the drain (else: lesion).
    probabilities = np.array([0.9, 0.2, 0.9, 0.1])
    maps = [c.drain.astype(float) if c.drain.any() else c.lesion.astype(float) for c in cases]
    maps[3] = np.ones((8, 8))
    config = ShortcutConfig(out=Path("unused"), n_boot=50)
    block = _split_block(cases, probabilities, maps, 0.5, config)
    assert block["accuracy"]["estimate"] == 0.5  # p2 missed, n1 a false positive
    assert block["positive_rate"]["drained_negatives"]["estimate"] == 1.0
    assert block["positive_rate"]["plain_negatives"]["estimate"] == 0.0
    assert block["heat_on_drain"]["estimate"] == 1.0
    assert block["drain_area_share"] == 0.25
    assert block["heat_on_drain_minus_area"]["estimate"] == 0.75
    assert block["heat_on_lesion_drained_positives"]["estimate"] == 0.0


def _iv(low: float) -> dict[str, float]:
    return {"estimate": low + 0.1, "low": low, "high": low + 0.2}


def test_detection_needs_a_drop_and_a_drain_effect() -> None:
    drop, no_drop = Interval(0.2, 0.1, 0.3, 100, 50, 50), Interval(0.0, -0.1, 0.1, 100, 50, 50)
    fooled = {
        "negatives_called_positive_drained_minus_plain": _iv(0.2),
        "heat_on_drain_minus_area": _iv(-0.1),
    }
    looks = {
        "negatives_called_positive_drained_minus_plain": _iv(-0.1),
        "heat_on_drain_minus_area": _iv(0.3),
    }
    neither = {
        "negatives_called_positive_drained_minus_plain": _iv(-0.1),
        "heat_on_drain_minus_area": _iv(-0.1),
    }
    assert _detected(drop, fooled) and _detected(drop, looks)
    assert not _detected(drop, neither) and not _detected(no_drop, fooled)


def test_bad_options() -> None:
    with pytest.raises(InvalidOptionError, match="--drain-share"):
        ShortcutConfig(out=Path("x"), drain_share=0.0)
    with pytest.raises(InvalidOptionError, match="--n-train"):
        ShortcutConfig(out=Path("x"), n_train=10)


def test_tiny_end_to_end_run(tmp_path: Path) -> None:
    config = ShortcutConfig(
        out=tmp_path, archs=("resnet18",), n_train=60, n_test=24, size=64, epochs=1, n_boot=50
    )
    result = run_shortcut(config, lambda line: None)
    stored = json.loads((tmp_path / RESULT_NAME).read_text())
    assert stored["answer"] == result["answer"]
    model = stored["models"]["resnet18"]
    decorrelated = model["decorrelated"]
    assert decorrelated["n"] == 24
    assert decorrelated["drained"] == {"positives": 6, "negatives": 6}  # half of each class
    assert model["correlated_test"]["drained"]["negatives"] == 0  # drains mark positives only
    assert 0.0 < decorrelated["drain_area_share"] < 0.2
    assert 0.0 <= decorrelated["heat_on_drain"]["estimate"] <= 1.0
    assert result["answer"][0].startswith("SYNTHETIC")
    assert result["answer"][-1].startswith("resnet18: ")
    # A second run reuses the phantoms and the finished model.
    assert (
        run_shortcut(config, lambda line: None)["models"]["resnet18"]
        == result["models"]["resnet18"]
    )


def test_a_vit_distils_from_the_cnn_trained_before_it(tmp_path: Path) -> None:
    config = ShortcutConfig(out=tmp_path)
    cnn = tmp_path / "models" / "resnet18"
    vit = _train_config(config, "vit_s16", tmp_path / "data", cnn)
    assert vit.teacher == cnn and vit.lr == 5e-5
    assert _train_config(config, "resnet18", tmp_path / "data", None).teacher is None
    assert _train_config(config, "vit_s16", tmp_path / "data", None).teacher is None
