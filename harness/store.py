"""Append-only, resumable per-image results of an evaluation run.

Layout of ``--out DIR``::

    results.jsonl     one JSON line per finished image (every model's answer, no pixels)
    maps/<id>.npz     that image's maps at their native resolution, one array per model

A line is the commit mark of its image: the map file is written first (temporary name, then an
atomic rename), then the line is appended and flushed to disk. A crash can only leave a map
file without a line (the image is simply redone) or a torn last line (dropped on open and cut
off the file, with a warning). A torn line anywhere else is an error naming the line. When an
image appears twice (a retried image), its last line wins.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ptxplain.errors import Code, ConfigError

__all__ = ["RETRYABLE_CODES", "ImageResult", "ModelAnswer", "ResultsStore"]

RESULTS_NAME = "results.jsonl"
MAPS_DIR = "maps"
RETRYABLE_CODES = frozenset(
    {
        int(Code.UNAVAILABLE),
        int(Code.DEADLINE_EXCEEDED),
        int(Code.RESOURCE_EXHAUSTED),
        int(Code.CANCELLED),
    }
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,120}$")
_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelAnswer:
    """One model's answer for one image; ``code`` 0 is OK (google.rpc.Code numbering)."""

    model: str
    code: int = 0
    message: str = ""
    architecture: str = ""
    positive_probability: float = math.nan
    threshold: float = math.nan
    positive: bool = False
    logits: tuple[float, ...] = ()
    trained: bool = False
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    geometry: dict[str, Any] | None = None
    map_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    backend_ms: float | None = None
    client_ms: float | None = None
    # the handler found the image's pixels among the model's training or validation images
    seen_in_training: bool = False
    heatmap: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.code == 0

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(dataclasses.replace(self, heatmap=None))
        data.pop("heatmap")
        data["logits"] = list(self.logits)
        for key in ("positive_probability", "threshold"):
            data[key] = None if not math.isfinite(data[key]) else data[key]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelAnswer:
        values = dict(data)
        values["logits"] = tuple(values.get("logits", ()))
        for key in ("positive_probability", "threshold"):
            values[key] = math.nan if values.get(key) is None else float(values[key])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class ImageResult:
    """Every model's answer for one image of the test split."""

    image_id: str
    label: int
    answers: dict[str, ModelAnswer]
    client_ms: float
    started_at: float
    map_file: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "label": self.label,
            "client_ms": self.client_ms,
            "started_at": self.started_at,
            "map_file": self.map_file,
            "answers": {name: a.to_json() for name, a in sorted(self.answers.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageResult:
        answers = {k: ModelAnswer.from_json(v) for k, v in data["answers"].items()}
        return cls(
            data["image_id"],
            int(data["label"]),
            answers,
            float(data["client_ms"]),
            float(data["started_at"]),
            data.get("map_file", ""),
        )

    def needs_retry(self, models: tuple[str, ...]) -> bool:
        """True when a wanted model is missing or failed with a transient code."""
        for model in models:
            answer = self.answers.get(model)
            if answer is None or answer.code in RETRYABLE_CODES:
                return True
        return False


def _map_name(image_id: str) -> str:
    if _SAFE_ID.match(image_id):
        return f"{image_id}.npz"
    return f"id-{hashlib.sha256(image_id.encode()).hexdigest()[:24]}.npz"


class ResultsStore:
    """The results of one run folder; appends are made by one thread (the replay loop's)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path = out_dir / RESULTS_NAME
        self.maps_dir = out_dir / MAPS_DIR
        self.torn_lines = 0

    def load(self) -> dict[str, ImageResult]:
        """Finished images by id (last line wins); cuts a torn last line off the file."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        results: dict[str, ImageResult] = {}
        offset = 0
        for number, line in enumerate(data.splitlines(keepends=True), start=1):
            parsed = self._parse(line, number, last=offset + len(line) == len(data))
            if parsed is None:
                self._truncate(offset, number)
                break
            results[parsed.image_id] = parsed
            offset += len(line)
        return results

    def _parse(self, line: bytes, number: int, *, last: bool) -> ImageResult | None:
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no line end")
            return ImageResult.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            if last:
                return None
            raise ConfigError(
                f"{self.path}: line {number} is not a result record ({exc}); the file was "
                "edited or corrupted — move it away to start over"
            ) from exc

    def _truncate(self, offset: int, number: int) -> None:
        _log.warning("%s: dropping torn line %d (interrupted write); redoing it", self.path, number)
        self.torn_lines += 1
        with self.path.open("r+b") as handle:
            handle.truncate(offset)

    def append(self, result: ImageResult) -> ImageResult:
        """Write the maps, then the line (the commit mark); returns the stored record."""
        maps = {n: a.heatmap for n, a in result.answers.items() if a.heatmap is not None}
        if maps:
            result = dataclasses.replace(result, map_file=self._write_maps(result.image_id, maps))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(result.to_json(), separators=(",", ":"), allow_nan=False) + "\n"
        with self.path.open("ab") as handle:
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        return result

    def _write_maps(self, image_id: str, maps: dict[str, np.ndarray]) -> str:
        self.maps_dir.mkdir(parents=True, exist_ok=True)
        name = _map_name(image_id)
        temporary = self.maps_dir / f".{name}.tmp"
        with temporary.open("wb") as handle:
            arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.float32) for k, v in maps.items()}
            savez: Any = np.savez
            savez(handle, **arrays)
        os.replace(temporary, self.maps_dir / name)
        return f"{MAPS_DIR}/{name}"

    def load_maps(self, result: ImageResult) -> dict[str, np.ndarray]:
        """The image's native-resolution maps by model ({} when it has none)."""
        if not result.map_file:
            return {}
        path = self.out_dir / result.map_file
        if not path.is_file():
            raise ConfigError(f"{path}: map file of image {result.image_id} is missing")
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}
