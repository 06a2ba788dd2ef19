"""``ptxplain bench gpu`` runs the same code on the CPU (CI has no GPU), and says clearly when
a GPU is asked for and missing."""

from __future__ import annotations

import pytest
import torch

from harness.bench.gpu import DeviceBenchSettings, report_lines, run_device_bench
from ptxplain.errors import ConfigError


def test_the_gpu_check_runs_its_engine_part_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda tool: None)  # the live stack part: skipped here
    settings = DeviceBenchSettings(
        models=("resnet18", "vit_s16"), size=32, batches=(1, 2), repeats=1, device="cpu"
    )
    figures = run_device_bench(settings, say=lambda line: None)
    rows = figures["engine"]
    assert [(r["arch"], r["batch"]) for r in rows] == [
        ("resnet18", 1),
        ("resnet18", 2),
        ("vit_s16", 1),
        ("vit_s16", 2),
    ]
    assert all(r["forward_ms"] > 0 and r["bf16_ms"] > 0 for r in rows)
    text = "\n".join(report_lines(figures))
    assert "resnet18" in text and "live stack: skipped (not on PATH: java, torchserve)" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_without_one_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        run_device_bench(DeviceBenchSettings(models=("resnet18",)), say=lambda line: None)
