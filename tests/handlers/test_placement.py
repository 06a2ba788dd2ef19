"""Cost-proportional worker placement: hand-made costs -> the workers each model gets."""

from __future__ import annotations

import argparse

import pytest

from handlers.placement import (
    measure_cost_ms,
    parse_workers,
    plan_lines,
    plan_workers,
)
from ptxplain.errors import ConfigError

# ms per image at batch 8, 96 px, 1 thread (the five default models; the measured ratios).
DEFAULT_FIVE = {
    "resnet18": 4.0,
    "vgg16_bn": 47.5,
    "vit_s16": 12.0,
    "densenet121": 24.0,
    "efficientnet_b0": 9.5,
}


def workers(costs: dict[str, float], cores: int, threads: int = 1) -> dict[str, int]:
    return {p.model: p.workers for p in plan_workers(costs, cores, threads)}


def test_the_model_holding_half_the_cost_gets_a_second_worker_on_two_cores() -> None:
    assert workers(DEFAULT_FIVE, cores=2) == {
        "resnet18": 1,
        "vgg16_bn": 2,
        "vit_s16": 1,
        "densenet121": 1,
        "efficientnet_b0": 1,
    }


def test_no_model_needs_more_than_its_workers_can_take() -> None:
    for cores in (1, 2, 4, 8, 16):
        for placement in plan_workers(DEFAULT_FIVE, cores):
            assert placement.demand_cores <= placement.workers * placement.threads
            assert 1 <= placement.workers <= cores


def test_half_a_worker_spare_at_the_limit() -> None:
    # demand 0.5 core: one worker, half busy; 0.6: a second one (at most 75 % busy).
    assert workers({"a": 1.0, "b": 3.0}, cores=2) == {"a": 1, "b": 2}  # demands 0.5, 1.5
    assert workers({"a": 1.0, "b": 1.0}, cores=1) == {"a": 1, "b": 1}  # 0.5 each
    assert workers({"a": 3.0, "b": 2.0}, cores=2) == {"a": 2, "b": 2}  # 1.2 and 0.8 cores
    assert workers({"a": 3.0, "b": 2.0}, cores=1) == {"a": 1, "b": 1}  # capped at the one core


def test_more_cores_spread_the_costly_models() -> None:
    assert workers(DEFAULT_FIVE, cores=8) == {
        "resnet18": 1,  # 0.33 cores
        "vgg16_bn": 5,  # 3.90
        "vit_s16": 2,  # 0.99
        "densenet121": 3,  # 1.97
        "efficientnet_b0": 2,  # 0.78
    }


def test_threads_count_as_cores_a_worker_can_take() -> None:
    assert workers({"a": 1.0, "b": 3.0}, cores=8, threads=2) == {"a": 2, "b": 4}
    # Never more workers than the cores can run at once (cores // threads).
    assert workers({"a": 1.0}, cores=4, threads=4) == {"a": 1}


def test_the_plan_says_why() -> None:
    placements = plan_workers(DEFAULT_FIVE, 2)
    lines = plan_lines(placements, 2)
    assert "2 core(s)" in lines[0] and len(lines) == 6
    vgg = next(line for line in lines if "vgg16_bn" in line)
    assert "49% of the cost" in vgg and "0.98 cores" in vgg and "2 worker(s)" in vgg


@pytest.mark.parametrize(
    ("costs", "cores"), [({}, 2), ({"a": 0.0}, 2), ({"a": float("nan")}, 2), ({"a": 1.0}, 0)]
)
def test_impossible_plans_are_config_errors(costs: dict[str, float], cores: int) -> None:
    with pytest.raises(ConfigError):
        plan_workers(costs, cores)


def test_workers_flag() -> None:
    assert parse_workers("auto") is None and parse_workers("AUTO") is None
    assert parse_workers("3") == 3
    for bad in ("0", "-1", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_workers(bad)


def test_a_measured_cost_is_positive_and_leaves_the_thread_count_alone() -> None:
    import torch

    before = torch.get_num_threads()
    cost = measure_cost_ms("resnet18", 32, batch_size=2, threads=1, repeats=1)
    assert 0 < cost < 10_000
    assert torch.get_num_threads() == before
