"""loadtest/scenario.py: the default scenario, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from loadtest.scenario import DEFAULT_SCENARIO, TASKS, load_scenario
from ptxplain.errors import ConfigError


def test_the_default_scenario_loads() -> None:
    scenario = load_scenario(DEFAULT_SCENARIO)
    assert [task for task, _ in scenario.weighted_tasks()] == list(TASKS)
    assert set(scenario.limits.max_p95_ms) == set(TASKS)
    assert scenario.limits.max_failure_ratio == 0.0
    assert scenario.images.formats == ("png", "dicom") and scenario.images.folder is None
    assert scenario.explain_deadline_s > 0 and scenario.limits.max_shed_p95_ms


def _write(tmp_path: Path, **changes: object) -> Path:
    raw = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    raw.update(changes)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"taskz": {}}, "unknown key(s) taskz"),
        ({"tasks": {"explain everything": 1}}, "unknown task 'explain everything'"),
        ({"tasks": {"explain all": 0}}, "at least one task"),
        ({"wait_s": [2, 1]}, "wait_s"),
        ({"explain_deadline_s": 0}, "explain_deadline_s"),
        ({"images": {"formats": ["gif"]}}, "images.formats"),
        ({"images": {"size": 16}}, "images.size"),
        ({"limits": {"max_failure_ratio": 2}}, "max_failure_ratio"),
        ({"limits": {"max_p95_ms": {"explain al": 5}}}, "unknown task 'explain al'"),
    ],
)
def test_bad_scenarios_are_refused_naming_file_and_key(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as error:
        load_scenario(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_relative_image_folders_are_resolved_against_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, images={"folder": "pngs"})
    assert load_scenario(path).images.folder == tmp_path / "pngs"
