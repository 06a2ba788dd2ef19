"""Soft-label distillation: the loss against a hand computation, a real (tiny) student run
from a trained teacher, what the student's metadata records, the teacher's checks, and a
profile whose entry names an earlier one as teacher."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from harness.train.distill import distillation_loss
from harness.train.profiles import Profile, ProfileEntry, profile_configs, run_profile
from harness.train.run import train
from ptxplain.errors import ConfigError, InvalidOptionError
from ptxplain.models.meta import META_FILENAME, ModelMeta
from tests.harness.train.test_training import SIZE, _config, _phantom, _weights_bytes


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _phantom(tmp_path_factory.mktemp("distill") / "phantom", 0.5)


@pytest.fixture(scope="module")
def teacher(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "resnet18"
    train(_config(data, out, epochs=1))
    return out


def test_the_loss_is_the_weighted_sum_of_hard_and_tempered_kl() -> None:
    student = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    teacher = torch.tensor([[0.0, 1.0], [3.0, -3.0]])
    hard = torch.tensor(0.7)
    alpha, t = 0.25, 2.0
    expected_kl = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        ps = [math.exp(v / t) for v in s_row]
        pt = [math.exp(v / t) for v in t_row]
        ps = [p / sum(ps) for p in ps]
        pt = [p / sum(pt) for p in pt]
        expected_kl += sum(q * math.log(q / p) for p, q in zip(ps, pt, strict=True))
    expected = (1 - alpha) * 0.7 + alpha * t * t * expected_kl / 2
    got = distillation_loss(hard, student, teacher, alpha, t)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # A student equal to its teacher pays only the hard term.
    assert float(distillation_loss(hard, teacher, teacher, alpha, t)) == pytest.approx(0.525)


def test_a_student_distils_from_a_teacher_and_records_it(
    data: Path, teacher: Path, tmp_path: Path
) -> None:
    plain = train(_config(data, tmp_path / "plain", epochs=1))
    result = train(_config(data, tmp_path / "student", epochs=1, teacher=teacher))
    meta = ModelMeta.read(tmp_path / "student" / META_FILENAME)
    assert result.finished and plain.meta is not None
    assert meta.weights_source == "ptxplain train (scratch, distilled from resnet18)"
    distill = meta.recipe["hyperparameters"]["distill"]
    teacher_meta = ModelMeta.read(teacher / META_FILENAME)
    assert distill["teacher"]["arch"] == "resnet18"
    assert distill["teacher"]["settings_key"] == teacher_meta.recipe["settings_key"]
    assert distill["alpha"] == 0.5 and distill["temperature"] == 2.0
    # The teacher changes the training loss, so the weights; the recipe key differs too.
    assert _weights_bytes(tmp_path / "student") != _weights_bytes(tmp_path / "plain")
    assert meta.recipe["settings_key"] != plain.meta.recipe["settings_key"]
    # Deterministic like any run.
    train(_config(data, tmp_path / "again", epochs=1, teacher=teacher))
    assert _weights_bytes(tmp_path / "again") == _weights_bytes(tmp_path / "student")


def test_a_teacher_must_exist_share_the_data_and_the_input_size(
    data: Path, teacher: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no trained model there"):
        train(_config(data, tmp_path / "a", epochs=1, teacher=tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="input size 32, the student's is 48"):
        train(_config(data, tmp_path / "b", epochs=1, teacher=teacher, input_size=48))
    other = _phantom(tmp_path / "other", 0.4)
    with pytest.raises(ConfigError, match="not on this data and split"):
        train(_config(other, tmp_path / "c", epochs=1, teacher=teacher))
    with pytest.raises(InvalidOptionError, match="--distill-alpha"):
        _config(data, tmp_path / "d", teacher=teacher, distill_alpha=0.0)


def test_a_profile_entry_distils_from_an_earlier_entry(data: Path, tmp_path: Path) -> None:
    entries = (
        ProfileEntry("resnet18", SIZE, 1, 8, 1e-3),
        ProfileEntry("resnet34", SIZE, 1, 8, 1e-3, teacher="resnet18", distill_alpha=0.7),
    )
    profile = Profile("tiny", "test", entries)
    configs = profile_configs(profile, _config(data, tmp_path / "ckpts"), {})
    assert configs[1].teacher == tmp_path / "ckpts" / "resnet18"
    assert configs[1].distill_alpha == 0.7
    first = run_profile(configs)
    assert [o.skipped for o in first] == [False, False]
    assert [o.skipped for o in run_profile(configs)] == [True, True]
    # Retraining the teacher (forced) retrains its student as well.
    forced = [dataclasses.replace(c, force=True, overwrite=c.arch == "resnet18") for c in configs]
    assert [o.skipped for o in run_profile(forced)] == [False, False]
    with pytest.raises(ConfigError, match="not an earlier entry"):
        Profile("bad", "test", tuple(reversed(entries)))


def test_gradient_clipping_changes_the_run_and_is_recorded_only_when_set(
    data: Path, tmp_path: Path
) -> None:
    plain = train(_config(data, tmp_path / "plain", epochs=1))
    clipped = train(_config(data, tmp_path / "clipped", epochs=1, clip_grad=1e-3))
    assert plain.meta is not None and clipped.meta is not None
    assert "clip_grad" not in plain.meta.recipe["hyperparameters"]  # old settings keys hold
    assert clipped.meta.recipe["hyperparameters"]["clip_grad"] == 1e-3
    assert _weights_bytes(tmp_path / "plain") != _weights_bytes(tmp_path / "clipped")
    with pytest.raises(InvalidOptionError, match="--clip-grad"):
        _config(data, tmp_path / "bad", clip_grad=0.0)
