"""The typed load-test scenario: task mix, images, deadlines and limits, read from YAML once.

loadtest/scenario.yaml is the default and documents every key. Unknown keys, unknown task
names, non-positive deadlines and out-of-range limits are a :class:`ConfigError` naming the
file and the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ptxplain.errors import ConfigError

__all__ = [
    "DEFAULT_SCENARIO",
    "IMAGE_FORMATS",
    "TASKS",
    "ImageSettings",
    "Limits",
    "Scenario",
    "load_scenario",
    "scenario_from_mapping",
]

DEFAULT_SCENARIO = Path(__file__).with_name("scenario.yaml")
TASKS = ("explain all", "explain one", "list models")
IMAGE_FORMATS = ("png", "dicom")


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    """Which images the users send: synthetic ones, or the files of a folder."""

    size: int = 512
    count: int = 8
    formats: tuple[str, ...] = IMAGE_FORMATS
    seed: int = 0
    folder: Path | None = None
    split: str = "test"

    def __post_init__(self) -> None:
        if not 64 <= self.size <= 2048:
            raise ConfigError(f"images.size must be in 64..2048, got {self.size}")
        if self.count < 1:
            raise ConfigError(f"images.count must be >= 1, got {self.count}")
        unknown = [f for f in self.formats if f not in IMAGE_FORMATS]
        if not self.formats or unknown:
            raise ConfigError(f"images.formats must be a non-empty subset of {IMAGE_FORMATS}")


@dataclasses.dataclass(frozen=True)
class Limits:
    """When a run fails: too many failures, slow answers, slow shedding, too few requests."""

    max_failure_ratio: float = 0.0
    max_p95_ms: Mapping[str, float] = dataclasses.field(default_factory=dict)
    max_shed_p95_ms: float | None = 1000.0
    min_requests: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_failure_ratio <= 1.0:
            raise ConfigError(
                f"limits.max_failure_ratio must be in [0, 1], got {self.max_failure_ratio}"
            )
        for task, value in self.max_p95_ms.items():
            _check_task(task, "limits.max_p95_ms")
            if value <= 0:
                raise ConfigError(f"limits.max_p95_ms[{task!r}] must be positive, got {value}")
        if self.max_shed_p95_ms is not None and self.max_shed_p95_ms <= 0:
            raise ConfigError(
                f"limits.max_shed_p95_ms must be positive, got {self.max_shed_p95_ms}"
            )
        if self.min_requests < 0:
            raise ConfigError(f"limits.min_requests must be >= 0, got {self.min_requests}")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Everything a load-test user needs; built once per process, passed to the users."""

    name: str = "default"
    tasks: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: {"explain all": 1, "explain one": 3, "list models": 1}
    )
    one_model_pool: tuple[str, ...] = ()
    wait_s: tuple[float, float] = (0.5, 1.5)
    explain_deadline_s: float = 60.0
    list_deadline_s: float = 5.0
    methods: tuple[str, ...] = ("gradcam",)
    logits_only: bool = False
    images: ImageSettings = dataclasses.field(default_factory=ImageSettings)
    limits: Limits = dataclasses.field(default_factory=Limits)

    def __post_init__(self) -> None:
        for task, weight in self.tasks.items():
            _check_task(task, "tasks")
            if weight < 0:
                raise ConfigError(f"tasks[{task!r}] weight must be >= 0, got {weight}")
        if sum(self.tasks.values()) <= 0:
            raise ConfigError("tasks: at least one task needs a positive weight")
        low, high = self.wait_s
        if not 0 <= low <= high:
            raise ConfigError(
                f"wait_s must be [low, high] with 0 <= low <= high, got {self.wait_s}"
            )
        if self.explain_deadline_s <= 0 or self.list_deadline_s <= 0:
            raise ConfigError("explain_deadline_s and list_deadline_s must be positive")

    def weighted_tasks(self) -> list[tuple[str, int]]:
        """(task, weight) for the tasks with a positive weight, in TASKS order."""
        return [(t, self.tasks[t]) for t in TASKS if self.tasks.get(t, 0) > 0]

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready copy (written next to the reports)."""
        raw = dataclasses.asdict(self)
        folder = raw["images"]["folder"]
        raw["images"]["folder"] = str(folder) if folder is not None else None
        return raw


def _check_task(task: str, where: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"{where}: unknown task {task!r}; known: {', '.join(TASKS)}")


def _check_keys(raw: Mapping[str, Any], cls: type, where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}unknown key(s) {', '.join(unknown)}; known: {sorted(known)}")


def _mapping(raw: object, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    return raw


def _images(raw: Mapping[str, Any], base: Path) -> ImageSettings:
    _check_keys(raw, ImageSettings, "images: ")
    values = dict(raw)
    if "formats" in values:
        values["formats"] = tuple(values["formats"] or ())
    if values.get("folder") is not None:
        folder = Path(str(values["folder"])).expanduser()
        values["folder"] = folder if folder.is_absolute() else base / folder
    return ImageSettings(**values)


def _limits(raw: Mapping[str, Any]) -> Limits:
    _check_keys(raw, Limits, "limits: ")
    values = dict(raw)
    values["max_p95_ms"] = dict(_mapping(values.get("max_p95_ms"), "limits.max_p95_ms"))
    return Limits(**values)


def _scenario(raw: Mapping[str, Any], base: Path) -> Scenario:
    _check_keys(raw, Scenario, "")
    values = dict(raw)
    values["images"] = _images(_mapping(values.get("images"), "images"), base)
    values["limits"] = _limits(_mapping(values.get("limits"), "limits"))
    values["tasks"] = dict(_mapping(values.get("tasks"), "tasks"))
    for key in ("one_model_pool", "wait_s", "methods"):
        if key in values:
            values[key] = tuple(values[key] or ())
    return Scenario(**values)


def scenario_from_mapping(raw: Mapping[str, Any], *, base: Path, source: str) -> Scenario:
    """A validated scenario from parsed YAML; relative paths are resolved against ``base``.
    Every error names ``source`` (the file)."""
    try:
        return _scenario(raw, base)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def load_scenario(path: Path) -> Scenario:
    """The scenario in a YAML file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"scenario {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError(f"scenario {path} must hold a YAML mapping")
    return scenario_from_mapping(raw, base=path.parent.absolute(), source=str(path))
