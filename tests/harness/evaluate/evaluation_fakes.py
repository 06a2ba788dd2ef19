"""A small phantom test split and a fake explainer client for unit tests of the evaluation
layer (store, resume, metrics, report) — the real gateway is tested end to end elsewhere."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.dataset import ImageRecord, ReadOptions
from harness.data.layouts import open_dataset
from harness.data.split import SplitConfig, load_or_create_split
from harness.evaluate.replay import FanOutAnswer
from harness.metrics.depth import ModelFacts
from harness.phantom.generate import PhantomConfig, generate_phantom
from harness.store import ModelAnswer
from ptxplain.errors import BackendError, Code

MODEL_FACTS = {
    "vgg16": ModelFacts("vgg16", "vgg16", "vgg", 16, 134_000_000, 15_500_000_000, True, 0.5),
    "resnet18": ModelFacts(
        "resnet18", "resnet18", "resnet", 18, 11_000_000, 1_800_000_000, True, 0.5
    ),
    "resnet50": ModelFacts(
        "resnet50", "resnet50", "resnet", 50, 23_000_000, 4_100_000_000, True, 0.5
    ),
}
GRID = 7
CANVAS = 224


def phantom_split(root: Path, n: int = 16, seed: int = 1) -> Path:
    """A phantom folder with every image in the test split."""
    data = root / "phantom"
    generate_phantom(PhantomConfig(n=n, seed=seed, size=64), data)
    load_or_create_split(open_dataset(data, ReadOptions()), data, SplitConfig((0.0, 0.0, 1.0)))
    return data


def _geometry(shape: tuple[int, int]) -> dict[str, float | int]:
    height, width = shape
    scale = CANVAS / max(height, width)
    content_h, content_w = round(height * scale), round(width * scale)
    return {
        "original_height": height,
        "original_width": width,
        "input_height": CANVAS,
        "input_width": CANVAS,
        "scale": scale,
        "pad_top": (CANVAS - content_h) // 2,
        "pad_left": (CANVAS - content_w) // 2,
        "content_height": content_h,
        "content_width": content_w,
    }


def _grid_map(mask: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    """The mask pooled to a 7x7 grid (a square image fills the canvas), blended with noise."""
    tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
    pooled = F.adaptive_avg_pool2d(tensor, GRID)[0, 0].numpy()
    noise = rng.random((GRID, GRID)).astype(np.float32)
    heat = quality * pooled / max(float(pooled.max()), 1e-6) + (1 - quality) * noise
    return heat.astype(np.float32)


def _record_of_png(image: bytes) -> ImageRecord:
    """A stand-in record for an image sent without an id (the robustness re-sends): its
    'lesion' is the brightest tenth of its pixels."""
    from harness.data.dataset import Label
    from ptxplain.imaging.decode import DecodeLimits, decode_image

    pixels = decode_image(image, limits=DecodeLimits()).pixels
    mask = pixels >= np.quantile(pixels, 0.9)
    return ImageRecord(
        "png", Path("png"), "p", Label.POSITIVE, pixels.shape, int(mask.sum()), lambda: mask
    )


@dataclasses.dataclass
class FakeClient:
    """Answers from the masks: better 'models' put more of their heat on the lesion.

    ``fail_models``: model -> image ids it answers with INTERNAL; ``drop_after``: from that many
    calls on, ``dropped`` models are absent from answers; ``down_after``: from that many calls
    on, every request fails as a whole (the gateway went away); ``seen``: model -> image ids it
    flags as seen in training; ``digests``: model -> the training digests its handler holds.
    """

    records: dict[str, ImageRecord]
    quality: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"vgg16": 0.5, "resnet18": 0.7, "resnet50": 0.9}
    )
    fail_models: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    seen: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    digests: dict[str, int] = dataclasses.field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    drop_after: int | None = None
    down_after: int | None = None
    delay_s: float = 0.0
    calls: list[str] = dataclasses.field(default_factory=list)
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def explain(self, image_id: str, image: bytes) -> FanOutAnswer:
        with self._lock:
            self.calls.append(image_id)
            count = len(self.calls)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            time.sleep(self.delay_s)
            return self._fan_out(image_id, image, count)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _fan_out(self, image_id: str, image: bytes, count: int) -> FanOutAnswer:
        if self.down_after is not None and count > self.down_after:
            raise BackendError("gateway at 127.0.0.1:1 is unavailable (fake)")
        record = self.records.get(image_id) or _record_of_png(image)
        mask = record.load_mask()
        mask = np.zeros(record.shape, bool) if mask is None else mask
        seed = int.from_bytes(image_id.encode()[-4:], "little")
        answers = {}
        for model, quality in self.quality.items():
            if self.drop_after is not None and count > self.drop_after and model in self.dropped:
                continue
            answers[model] = self._answer(model, quality, record, mask, image_id, seed)
        return FanOutAnswer(answers, client_ms=5.0 + count % 7)

    def _answer(
        self,
        model: str,
        quality: float,
        record: ImageRecord,
        mask: np.ndarray,
        image_id: str,
        seed: int,
    ) -> ModelAnswer:
        if image_id in self.fail_models.get(model, set()):
            return ModelAnswer(model, code=int(Code.INTERNAL), message="forward failed (fake)")
        rng = np.random.default_rng([seed, len(model)])
        noise = 0.35 * (2 * rng.random() - 1)
        probability = float(np.clip(0.5 + (int(record.label) - 0.5) * quality + noise, 0, 1))
        timings = {
            "decode_ms": 1.0,
            "preprocess_ms": 0.5,
            "forward_cam_ms": 10.0 * quality,
            "encode_ms": 0.2,
            "batch_size": 1.0,
            "gateway_queue_ms": 0.1,
            "gateway_backend_ms": 12.0,
            "gateway_own_ms": 0.4,
        }
        return ModelAnswer(
            model,
            architecture=model,
            positive_probability=probability,
            threshold=0.5,
            positive=probability >= 0.5,
            logits=(0.0, probability),
            trained=True,
            timings=timings,
            geometry=_geometry(record.shape),
            backend_ms=12.0,
            client_ms=4.0 + quality,
            map_info={"method": "gradcam", "height": GRID, "width": GRID},
            heatmap=_grid_map(mask, quality, rng),
            seen_in_training=image_id in self.seen.get(model, set()),
        )


class FakeCatalogClient(FakeClient):
    """The fake client with the gateway's model list."""

    def list_models(self) -> list[ModelFacts]:
        if self.down_after == 0:
            raise BackendError("gateway at 127.0.0.1:1 is unavailable (fake)")
        return [
            dataclasses.replace(
                MODEL_FACTS[name],
                provenance={"training_digests": self.digests[name]}
                if name in self.digests
                else None,
            )
            for name in self.quality
        ]

    def close(self) -> None:
        pass


def records_of(data: Path) -> dict[str, ImageRecord]:
    from harness.evaluate.run import load_test_split

    _, records = load_test_split(data, ReadOptions())
    return {r.image_id: r for r in records}
