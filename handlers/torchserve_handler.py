"""The one TorchServe handler for every architecture.

decode (PNG / JPEG / DICOM) -> letterbox preprocess -> ONE forward pass (+ CAM backward down to
the target layer only) -> compact protobuf result per item. The architecture, input size,
normalization and threshold come from the archive's ``ptxplain-model.json``.

When the archive holds ``train-digests.bin`` (the pixel digests of the model's training and
validation images, :mod:`ptxplain.imaging.digest`), each decoded image is digested too and the
result says whether it is one of them (``seen_in_training``); ``describe_handle`` reports how
many digests the handler holds (``training_digests``, 0 = no check).

A bad item never raises: raising fails the whole batch with 503 (which gRPC clients read as
UNAVAILABLE). It gets an error status in its own result (and its HTTP status over REST) while the
batch's other items and the worker carry on.

Nothing from a request reaches TorchServe's own frames except inside the protobuf result: the
reason phrase of an item's status is the fixed ASCII phrase of its HTTP status. (TorchServe 0.12
frames that phrase with its length in characters but writes its UTF-8 bytes, so one non-ASCII
character puts the worker's stream out of step and kills every worker of the batch.) The full
message travels in the result's ``status``.

TorchServe 0.12 cannot tell a handler that a request's client left: its batch aggregator hands
every queued job to the worker (only the continuous-batching modes look at ``Job.isOpen``), and a
cancelled gRPC call only suppresses the answer. The gateway therefore bounds what it hands over.
"""

from __future__ import annotations

import dataclasses
import http
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ptxplain.errors import (
    ConfigError,
    DecodeError,
    InternalError,
    InvalidOptionError,
    PtxplainError,
)
from ptxplain.explain.engine import Explanation, ExplanationEngine, Target
from ptxplain.explain.maps import scaled_map
from ptxplain.explain.methods import METHODS, get_method
from ptxplain.explain.options import DATA_KEYS, RequestOptions, parse_options
from ptxplain.explain.result_codec import encode_map, error_status, ok_status
from ptxplain.imaging.decode import DecodeLimits
from ptxplain.imaging.digest import (
    DIGESTS_FILENAME,
    SeenDigests,
    check_digest_file,
    pixel_digest,
    read_digests,
)
from ptxplain.imaging.preprocess import Geometry, geometry_to_proto, letterbox, to_model_input
from ptxplain.imaging.shared_decode import SharedDecoder, default_dir
from ptxplain.machine import (
    DEFAULT_KEEP_FREED_MB,
    DEFAULT_SHARED_DECODE_MB,
    DEFAULT_SLICE_MS,
    WORKER_SETTINGS,
    EngineGate,
    check_worker_settings,
    cpu_cores,
    cpu_slice,
    keep_freed_memory,
    parse_engines_at_once,
)
from ptxplain.models.meta import META_FILENAME, ModelMeta
from ptxplain.models.registry import model_stats
from ptxplain.models.weights import build_with_weights
from ptxplain.v1 import result_pb2 as pb

__all__ = ["CONTENT_TYPE", "HandlerConfig", "PtxplainHandler", "reason_phrase"]

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/x-protobuf"


@dataclasses.dataclass(frozen=True)
class HandlerConfig:
    """The ``ptxplain:`` section of an archive's model-config YAML."""

    torch_threads: int = 1
    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_map_side: int = 1024
    # The engine's autocast (bfloat16 / float16), None = float32.
    autocast: str | None = None
    # Decodes shared with the host's other workers (ptxplain/imaging/shared_decode.py), MiB; 0 = off.
    decode_cache_mb: int = DEFAULT_SHARED_DECODE_MB
    # The scheduler time slice asked for this worker (ptxplain/machine.py), ms; 0 = the kernel's.
    cpu_slice_ms: int = DEFAULT_SLICE_MS
    # Freed memory the worker keeps for reuse (ptxplain/machine.py), MiB; 0 = the allocator's way.
    keep_freed_mb: int = DEFAULT_KEEP_FREED_MB
    # Engines of the host's workers computing at once (ptxplain/machine.py EngineGate); 0 = no
    # limit; None ("auto") = the cores this worker may use on the CPU, no limit on a GPU.
    engines_at_once: int | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> HandlerConfig:
        raw = dict(raw or {})
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown handler setting(s): {', '.join(sorted(unknown))}")
        autocast = raw.pop("autocast", None)
        try:
            at_once = parse_engines_at_once(raw.pop("engines_at_once", None))
        except ValueError as exc:
            raise ConfigError(f"handler setting {exc}") from None
        cfg = cls(**{k: int(v) for k, v in raw.items()}, autocast=autocast, engines_at_once=at_once)
        for field in dataclasses.fields(cfg):
            value = getattr(cfg, field.name)
            if field.name not in WORKER_SETTINGS and isinstance(value, int) and value < 1:
                raise ConfigError(f"handler setting {field.name} must be at least 1, got {value}")
        check_worker_settings("handler setting", cfg)
        return cfg


@dataclasses.dataclass
class _Item:
    """One request of a batch on its way through the stages."""

    options: RequestOptions = dataclasses.field(default_factory=RequestOptions)
    tensor: torch.Tensor | None = None
    geometry: Geometry | None = None
    error: PtxplainError | None = None
    decode_ms: float = 0.0
    decode_shared: bool = False
    preprocess_ms: float = 0.0
    row: int = -1  # this item's row in the batch tensor
    seen_in_training: bool = False


class _Batch(NamedTuple):
    """A batch's forward + CAM: its explanation (None when no item got that far), the ms it
    waited for a free core, the ms of the forward + CAM itself and the process's CPU ms in it."""

    explanation: Explanation | None
    core_wait_ms: float = 0.0
    forward_cam_ms: float = 0.0
    forward_cam_cpu_ms: float = 0.0


def _device(gpu_id: object) -> torch.device:
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(str(gpu_id))}")
    return torch.device("cpu")


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _load_digests(model_dir: Path, meta: ModelMeta) -> SeenDigests:
    """The archive's training digests (none without the file); :class:`WeightsError` when the
    file is not the one the metadata records."""
    path = model_dir / DIGESTS_FILENAME
    if not path.is_file():
        if meta.training_digests:
            log.warning(
                "%s records %d training digests but the archive has no %s: not checked",
                META_FILENAME,
                meta.training_digests,
                DIGESTS_FILENAME,
            )
        return SeenDigests()
    check_digest_file(path, meta.training_digests_sha256)
    return read_digests(path)


class PtxplainHandler:
    """TorchServe custom service: ``initialize(context)`` once, ``handle(data, context)``."""

    def __init__(self) -> None:
        self.initialized = False
        self._description: str | None = None

    def initialize(self, context: Any) -> None:
        props = context.system_properties
        model_dir = Path(props["model_dir"])
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        self.config = HandlerConfig.from_mapping(yaml_config.get("ptxplain"))
        torch.set_num_threads(self.config.torch_threads)
        slice_ms = cpu_slice(self.config.cpu_slice_ms) if self.config.cpu_slice_ms else None
        kept = keep_freed_memory(self.config.keep_freed_mb)
        self.meta = ModelMeta.read(model_dir / META_FILENAME)
        self.seen = _load_digests(model_dir, self.meta)
        self.model_name = str(context.model_name)
        limits = DecodeLimits(max_bytes=self.config.max_bytes, max_pixels=self.config.max_pixels)
        self.decoder = SharedDecoder(
            default_dir(), limits, max_bytes=self.config.decode_cache_mb * 1024 * 1024
        )
        spec = self.meta.spec
        weights = model_dir / context.manifest["model"]["serializedFile"]
        model = build_with_weights(spec, self.meta.input_size, weights)
        device = _device(props.get("gpu_id"))
        self.engine = ExplanationEngine(model.to(device), spec, autocast=self.config.autocast)
        at_once = self.config.engines_at_once
        if at_once is None:
            at_once = cpu_cores() if device.type == "cpu" else 0
        # Scoped like the shared decodes: the workers that share this host's decodes and cores.
        self.gate = EngineGate(str(self.decoder.root), at_once)
        self.initialized = True
        log.info(
            "loaded %s (%s, %dpx, %s, %d training digests) on %s with %d torch threads; "
            "decodes shared: %s; time slice: %s; freed memory kept: %s; engines at once: %s",
            self.model_name,
            spec.name,
            self.meta.input_size,
            "trained" if self.meta.trained else "untrained",
            len(self.seen),
            self.engine.device,
            self.config.torch_threads,
            f"{self.decoder.root} (up to {self.decoder.max_bytes >> 20} MiB)"
            if self.decoder.enabled
            else "no",
            f"{slice_ms:g} ms" if slice_ms else "the kernel's",
            f"up to {self.config.keep_freed_mb} MiB" if kept else "no",
            self.gate.slots if self.gate.enabled else "no limit",
        )

    # -- stages -------------------------------------------------------------------------------

    def handle(self, data: list[Mapping[str, Any]], context: Any) -> list[bytes | str]:
        if _is_describe(context):
            return [self.describe_handle()]
        items = [self._prepare(row) for row in data]
        batch = self._explain(items)
        return [self._respond(i, item, batch, len(items), context) for i, item in enumerate(items)]

    def describe_handle(self) -> str:
        """Metadata for TorchServe's ``GET /models/{name}?customized=true`` (JSON text)."""
        if self._description is None:
            spec = self.meta.spec
            stats = model_stats(spec, self.meta.input_size)
            described = json.loads(self.meta.to_json())
            described.update(
                model=self.model_name,
                family=spec.family,
                depth=spec.depth,
                methods=list(METHODS),
                training_digests=len(self.seen),
                engines_at_once=self.gate.slots if self.gate.enabled else 0,
                **stats,
            )
            self._description = json.dumps(described, sort_keys=True)
        return self._description

    def _prepare(self, row: Mapping[str, Any]) -> _Item:
        item = _Item()
        try:
            item.options = parse_options(
                row,
                num_classes=len(self.meta.classes),
                max_map_side=self.config.max_map_side,
                method_name=_method_name,
            )
            started = time.perf_counter()
            decoded, item.decode_shared = self.decoder.decode(_payload(row))
            item.decode_ms = _ms(started)
            started = time.perf_counter()
            if self.seen:
                item.seen_in_training = pixel_digest(decoded.pixels) in self.seen
            canvas, item.geometry = letterbox(decoded.pixels, self.meta.input_size)
            item.tensor = to_model_input(canvas, self.meta.mean, self.meta.std)
            item.preprocess_ms = _ms(started)
        except PtxplainError as exc:
            item.error = exc
        except Exception as exc:  # a library failing on bytes we did not foresee
            log.exception("preparing an item failed")
            item.error = DecodeError(f"cannot prepare the image: {type(exc).__name__}: {exc}")
        return item

    def _explain(self, items: list[_Item]) -> _Batch:
        good = [item for item in items if item.error is None]
        if not good:
            return _Batch(None)
        methods = [m for item in good if item.options.wants_maps for m in item.options.methods]
        targets: list[Target] = [item.options.target for item in good]
        for row, item in enumerate(good):
            item.row = row
        batch = torch.stack([item.tensor for item in good if item.tensor is not None])
        waited = time.perf_counter()
        with self.gate.hold(self.config.torch_threads):
            started, cpu_started = time.perf_counter(), time.process_time()
            explanation: Explanation | None
            try:
                explanation = self.engine.explain(batch, targets, list(dict.fromkeys(methods)))
            except Exception as exc:
                explanation = self._failed(good, exc)
            cpu_ms = (time.process_time() - cpu_started) * 1000.0
        return _Batch(explanation, (started - waited) * 1000.0, _ms(started), cpu_ms)

    @staticmethod
    def _failed(good: list[_Item], exc: Exception) -> None:
        """Every item of a batch whose forward/CAM raised gets the error."""
        log.exception("forward/CAM failed for a batch of %d", len(good))
        failure = (
            exc
            if isinstance(exc, PtxplainError)
            else InternalError(f"forward/CAM failed: {type(exc).__name__}: {exc}")
        )
        for item in good:
            item.error = failure

    def _respond(
        self,
        index: int,
        item: _Item,
        batch: _Batch,
        batch_size: int,
        context: Any,
    ) -> bytes:
        started = time.perf_counter()
        result = pb.ExplainResult(
            model=self.model_name,
            architecture=self.meta.architecture,
            classes=list(self.meta.classes),
            threshold=self.meta.threshold,
            trained=self.meta.trained,
            trained_on=self.meta.trained_on,
            seen_in_training=item.seen_in_training,
        )
        if item.error is None and batch.explanation is not None:
            try:
                self._fill(result, item, batch.explanation)
            except PtxplainError as exc:
                item.error = exc
        if item.error is None:
            result.status.CopyFrom(ok_status())
        else:
            item.error.model = item.error.model or self.model_name
            result.status.CopyFrom(error_status(item.error))
            status = item.error.http_status
            context.set_response_status(status, reason_phrase(status), index)
        result.timings.CopyFrom(
            pb.Timings(
                decode_ms=item.decode_ms,
                decode_shared=item.decode_shared,
                preprocess_ms=item.preprocess_ms,
                forward_cam_ms=batch.forward_cam_ms if item.error is None else 0.0,
                core_wait_ms=batch.core_wait_ms if item.error is None else 0.0,
                forward_cam_cpu_ms=batch.forward_cam_cpu_ms if item.error is None else 0.0,
                encode_ms=_ms(started),
                batch_size=batch_size,
            )
        )
        context.set_response_content_type(index, CONTENT_TYPE)
        return result.SerializeToString()

    def _fill(self, result: pb.ExplainResult, item: _Item, explanation: Explanation) -> None:
        row, opts = item.row, item.options
        probabilities = explanation.probabilities[row]
        positive = float(probabilities[self.meta.positive_class])
        result.logits.extend(explanation.logits[row].tolist())
        result.probabilities.extend(probabilities.tolist())
        result.predicted_class = int(probabilities.argmax())
        result.positive_probability = positive
        result.positive = positive >= self.meta.threshold
        if item.geometry is not None:
            result.geometry.CopyFrom(geometry_to_proto(item.geometry))
        if not opts.wants_maps:
            return
        size = self._map_size(opts)
        for method in opts.methods:
            cam = explanation.cams[method][row]
            result.maps.append(
                encode_map(
                    scaled_map(cam, size, opts.normalize),
                    method=method,
                    encoding=opts.map_encoding,
                    normalized=opts.normalize,
                    resized=size is not None,
                    raw_range=(float(cam.min()), float(cam.max())),
                    target_class=explanation.targets[row],
                )
            )

    def _map_size(self, opts: RequestOptions) -> tuple[int, int] | None:
        if opts.map_size == "native":
            return None
        if opts.map_size == "input":
            return (self.meta.input_size, self.meta.input_size)
        assert isinstance(opts.map_size, tuple)
        return opts.map_size


def _method_name(name: str) -> str:
    return get_method(name).name


def reason_phrase(status: int) -> str:
    """The fixed ASCII reason phrase for an HTTP status (never text from the request)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Client Error" if 400 <= status < 500 else "Error"


def _is_describe(context: Any) -> bool:
    try:
        return context.get_request_header(0, "describe") == "True"
    except (AttributeError, IndexError, KeyError, TypeError):
        return False


def _payload(row: Mapping[str, Any]) -> bytes:
    for key in DATA_KEYS:
        value = row.get(key)
        if value is not None:
            if isinstance(value, bytes | bytearray):
                return bytes(value)
            raise InvalidOptionError(
                f"the image must be sent as raw bytes (got {type(value).__name__} in {key!r})"
            )
    raise DecodeError("empty body: no image bytes in the request")
