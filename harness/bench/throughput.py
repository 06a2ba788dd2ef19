"""``ptxplain bench throughput``: the live stack against the in-process limit, in one run.

On the same images (phantom DICOMs), models, input size and torch threads:

* reference   in-process: the same decoding (once per image when the handlers share decodes,
              else once per model), letterbox and engines the handler runs, batched as
              TorchServe batches (``--batch-size``), in one process; the limit is ``cores``
              images/s divided by one image's cost summed over the models (two such
              processes on this 2-core machine each ran within 1-2 % of one alone);
* plan        workers per model from the reference's per-image costs and ``cores``
              (handlers/placement.py; ``workers`` = a count forces that many for every model,
              1 for one each; on a GPU one each);
* stack       a real TorchServe (the same batching: ``batchSize`` / ``maxBatchDelay``, the
              planned workers and ``threads`` torch threads per model, the frontend sized for
              ``cores``) behind the gateway, driven by a
              closed loop of C clients (every request to every model) over gRPC and HTTP, for
              each C in ``--concurrency``: images/s (requests every model answered; any
              other is counted as a failure), p50 / p95 / p99, the batch sizes
              TorchServe formed, and where the time went (gateway, TorchServe queue and
              transport, decode, preprocess, forward + CAM, encode, client <-> gateway).

Each level runs in windows of ``seconds`` until the last three agree within ``stability_pct``
(mean latency; images/s follows from it in a closed loop), as perf_analyzer does; its figures
are those three windows'.
Ratios are printed side by side: saturated images/s over the reference, and the concurrency-1
p50 over one image's in-process time. The reference (medians of ``repeats`` timed batches) is
measured before the stack, between the transports and after it (the machine's speed drifts by
several per cent over minutes); each transport's ratios use the mean of the pair around it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import http.client
import itertools
import json
import os
import queue
import statistics
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from handlers.placement import plan_lines, plan_workers
from harness.bench.engine import timed_ms as _timed
from ptxplain.errors import InternalError, InvalidOptionError
from ptxplain.machine import (
    DEFAULT_KEEP_FREED_MB,
    DEFAULT_SHARED_DECODE_MB,
    DEFAULT_SLICE_MS,
    cpu_slice,
    keep_freed_memory,
)

__all__ = ["ThroughputSettings", "report_lines", "run_throughput_bench"]

Say = Callable[[str], None]

# The windows a level's figures come from, which must agree for it to count as stable.
STABLE_WINDOWS = 3


@dataclasses.dataclass(frozen=True)
class ThroughputSettings:
    models: tuple[str, ...]
    size: int = 96
    threads: int = 1
    batch_size: int = 8
    max_batch_delay_ms: int = 20
    concurrency: tuple[int, ...] = (1, 4, 8, 16, 32)
    # One measurement window, s; a level runs windows until the last STABLE_WINDOWS agree
    # within stability_pct per cent (mean latency, _spread) or max_windows have run.
    seconds: float = 5.0
    stability_pct: float = 10.0
    max_windows: int = 10
    repeats: int = 5  # timed batches per model in the reference (median taken)
    transports: tuple[str, ...] = ("grpc", "http")
    images: int = 8
    image_size: int = 256
    # Parallel workers the reference's limit counts: the cores, or 1 for one GPU.
    cores: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    device: str = "cpu"  # or "gpu": archives with deviceType gpu, the reference on CUDA
    # Workers per model: None = planned from the reference's costs (handlers/placement.py).
    workers: int | None = None
    # The handler's decode sharing (MiB, 0 = each model decodes; the reference then decodes
    # per model too) and the time slice its workers ask for (ms, 0 = the kernel's).
    decode_cache_mb: int = DEFAULT_SHARED_DECODE_MB
    cpu_slice_ms: int = DEFAULT_SLICE_MS
    # Freed memory kept for reuse, MiB, by the workers and by this process for the reference.
    keep_freed_mb: int = DEFAULT_KEEP_FREED_MB
    # Engines of the workers computing at once (0 = no limit; None = the handler's auto).
    engines_at_once: int | None = None

    def __post_init__(self) -> None:
        bad = [
            f"{flag} must be {rule}, not {value:g}"
            for flag, value, ok, rule in (
                ("--seconds", self.seconds, self.seconds > 0, "above 0"),
                ("--stability", self.stability_pct, self.stability_pct >= 0, "0 or more"),
                (
                    "--max-windows",
                    self.max_windows,
                    self.max_windows >= STABLE_WINDOWS,
                    f"{STABLE_WINDOWS} or more",
                ),
                ("--repeats", self.repeats, self.repeats >= 1, "1 or more"),
                ("--batch-size", self.batch_size, self.batch_size >= 1, "1 or more"),
            )
            if not ok
        ]
        if not self.concurrency or min(self.concurrency) < 1:
            bad.append(f"--concurrency must be counts of 1 or more, not {self.concurrency}")
        unknown = sorted(set(self.transports) - {"grpc", "http"})
        if unknown or not self.transports:
            bad.append(f"--transports must be grpc and/or http, not {','.join(self.transports)}")
        if bad:
            raise InvalidOptionError("; ".join(bad))


# Every request the stack gets is another image, as in real use: each phantom DICOM carries this
# Study Description, and each request's copy has its own number in it (same length, so the file
# stays valid). Without it, the workers' shared decodes would serve the bench's few images from
# memory after their first round and the stack would skip work the reference counts.
_STAMP = b"ptxplain-bench-000000000000"
# The handler's stages each result times (its timings), in the order they run.
_HANDLER_STAGES = ("decode", "preprocess", "core_wait", "forward_cam", "encode")


def _phantom_images(settings: ThroughputSettings, root: Path) -> list[bytes]:
    import io

    import pydicom

    from harness.phantom.generate import PhantomConfig, generate_phantom

    config = PhantomConfig(n=settings.images, seed=0, size=settings.image_size)
    generate_phantom(config, root / "phantom")
    paths = sorted((root / "phantom").rglob("*.dcm"))[: settings.images]
    images = []
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.StudyDescription = _STAMP.decode()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        images.append(buffer.getvalue())
    return images


def _stamped(image: bytes, number: int) -> bytes:
    """``image`` with ``number`` in its Study Description: another file, the same pixels."""
    at = image.index(_STAMP) + len(_STAMP) - 12
    return image[:at] + b"%012d" % (number % 10**12) + image[at + 12 :]


def _at_once_text(value: int | None) -> str:
    if value is None:
        return "the workers' cores (auto)"
    return str(value) if value else "no limit"


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _engines(settings: ThroughputSettings) -> list[tuple[Any, Any]]:
    """(spec, engine) per model at the bench's input size, on the bench's device."""
    import torch

    from ptxplain.explain.engine import ExplanationEngine
    from ptxplain.models.registry import get_spec

    where = torch.device("cuda" if settings.device == "gpu" else "cpu")
    specs = [get_spec(name) for name in settings.models]
    return [(s, ExplanationEngine(s.build(settings.size).to(where), s)) for s in specs]


def _model_inputs(decoded: Sequence[Any], spec: Any, size: int) -> list[Any]:
    """Each image letterboxed and normalized for ``spec``, as the handler does."""
    from ptxplain.imaging.preprocess import letterbox, to_model_input

    return [to_model_input(letterbox(pixels, size)[0], spec.mean, spec.std) for pixels in decoded]


def _reference(settings: ThroughputSettings, images: list[bytes]) -> dict[str, Any]:
    """One image's in-process cost: its decode (once per image when the handler shares decodes,
    else once per model, as the handlers then do), each model's letterbox + normalization, and
    forward + CAM at batch 1 and per image at ``batch_size``."""
    import torch

    from ptxplain.imaging.decode import DecodeLimits, decode_image

    torch.set_num_threads(settings.threads)
    decoded = [decode_image(data, limits=DecodeLimits()).pixels for data in images]  # warm-up
    started = time.perf_counter()
    decoded = [decode_image(data, limits=DecodeLimits()).pixels for data in images]
    decode_ms = _ms(started) / len(images)
    decodes = 1 if settings.decode_cache_mb else len(settings.models)
    per_model: dict[str, dict[str, float]] = {}
    for name, (spec, engine) in zip(settings.models, _engines(settings), strict=True):
        where = engine.device
        started = time.perf_counter()
        tensors = _model_inputs(decoded, spec, settings.size)
        prepare_ms = _ms(started) / len(images)
        if not settings.decode_cache_mb:
            prepare_ms += decode_ms
        batch = torch.stack((tensors * settings.batch_size)[: settings.batch_size]).to(where)
        engine.explain(batch[:1])  # warm-up
        engine.explain(batch)
        # The median of --repeats, as `ptxplain bench engine` reports (the 138 ms was
        # that median); the best of them is kept beside it.
        ones = [
            _timed(functools.partial(engine.explain, batch[:1]), where)
            for _ in range(settings.repeats)
        ]
        full = functools.partial(engine.explain, batch)
        manys = [_timed(full, where) / len(batch) for _ in range(settings.repeats)]
        per_model[name] = {
            "prepare_ms": prepare_ms,
            "batch1_ms": statistics.median(ones),
            "batched_ms": statistics.median(manys),
            "batched_ms_best": min(manys),
        }
    shared = decode_ms if settings.decode_cache_mb else 0.0

    def per_image(engine: str) -> float:
        return shared + sum(m["prepare_ms"] + m[engine] for m in per_model.values())

    image_ms, batched_ms, best_ms = map(per_image, ("batch1_ms", "batched_ms", "batched_ms_best"))
    return {
        "per_model": per_model,
        "decode_ms": decode_ms,
        "decodes_per_image": decodes,
        "image_ms_batch1": image_ms,
        "image_ms_batched": batched_ms,
        "image_ms_batched_best": best_ms,
        "limit_per_s_batch1": settings.cores * 1000.0 / image_ms,
        "limit_per_s_batched": settings.cores * 1000.0 / batched_ms,
    }


def _saturating_process(
    settings: ThroughputSettings, images: list[bytes], ready: Any, results: Any
) -> None:
    """One process of :func:`_in_process_saturated`: the reference's work back to back."""
    import torch

    from ptxplain.imaging.decode import DecodeLimits, decode_image

    torch.set_num_threads(settings.threads)
    keep_freed_memory(settings.keep_freed_mb)
    if settings.cpu_slice_ms:
        cpu_slice(settings.cpu_slice_ms)
    engines = _engines(settings)
    batch = (images * settings.batch_size)[: settings.batch_size]
    decodes = 1 if settings.decode_cache_mb else len(settings.models)

    def one_batch() -> None:
        for _ in range(decodes):  # once per image when decodes are shared, else per model
            pixels = [decode_image(data, limits=DecodeLimits()).pixels for data in batch]
        for spec, engine in engines:
            engine.explain(torch.stack(_model_inputs(pixels, spec, settings.size)))
        if settings.device == "gpu":
            torch.cuda.synchronize()

    one_batch()  # warm-up
    ready.wait(timeout=900)
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < STABLE_WINDOWS * settings.seconds:  # as a level
        one_batch()
        done += len(batch)
    results.put((done, time.perf_counter() - started))


def _in_process_saturated(settings: ThroughputSettings, images: list[bytes]) -> dict[str, Any]:
    """The in-process limit measured rather than reckoned: one process per core (one on a GPU),
    each decoding, preparing and explaining batches of every model back to back for
    ``STABLE_WINDOWS`` x ``seconds`` (as long as a level's counted windows), all at once;
    images/s over them all. Where the reckoned limit (cores x one
    process alone) assumes that the cores do not slow each other, this counts what they share
    (caches, memory bandwidth, the host's other tenants)."""
    import multiprocessing

    processes = 1 if settings.device == "gpu" else settings.cores
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(processes), context.Queue()
    children = [
        context.Process(target=_saturating_process, args=(settings, images, ready, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    counts: list[tuple[int, float]] = []
    try:
        while len(counts) < processes:
            try:
                counts.append(results.get(timeout=2.0))
            except queue.Empty:
                failed = [c.exitcode for c in children if c.exitcode not in (None, 0)]
                if failed:
                    raise InternalError(
                        f"an in-process saturation process failed (exit {failed[0]}); "
                        "its traceback is above"
                    ) from None
    finally:
        for child in children:
            child.join(timeout=60)
            if child.is_alive():
                child.kill()
    images_done = sum(n for n, _ in counts)
    seconds = max(wall for _, wall in counts)
    return {"processes": processes, "seconds": seconds, "per_s": images_done / seconds}


def _mean_reference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The two measurements' means (limits from the mean costs), and each one's batched cost."""

    def mean(a: Any, b: Any) -> Any:
        if isinstance(a, dict):
            return {k: mean(a[k], b[k]) for k in a}
        return (a + b) / 2 if isinstance(a, float) else a

    combined = mean(before, after)
    cores = before["limit_per_s_batched"] * before["image_ms_batched"] / 1000.0
    combined["limit_per_s_batch1"] = cores * 1000.0 / combined["image_ms_batch1"]
    combined["limit_per_s_batched"] = cores * 1000.0 / combined["image_ms_batched"]
    combined["batched_ms_before_after"] = [before["image_ms_batched"], after["image_ms_batched"]]
    return combined


def _plan(settings: ThroughputSettings, reference: dict[str, Any]) -> dict[str, Any]:
    """Workers per model, and the lines saying why."""
    if settings.workers is not None or settings.device == "gpu":
        count = settings.workers or 1
        why = f"--workers {count}" if settings.workers is not None else "one GPU"
        return {
            "workers": dict.fromkeys(settings.models, count),
            "lines": [f"workers: {count} per model ({why})"],
        }
    costs = {m: c["prepare_ms"] + c["batched_ms"] for m, c in reference["per_model"].items()}
    placements = plan_workers(costs, settings.cores, settings.threads)
    return {
        "workers": {p.model: p.workers for p in placements},
        "lines": plan_lines(placements, settings.cores),
    }


def _start_stack(
    settings: ThroughputSettings,
    workers: dict[str, int],
    root: Path,
    say: Say,
    running: contextlib.ExitStack,
) -> tuple[Any, Any]:
    """TorchServe and the gateway, each stopped by ``running`` from the moment it is up (so a
    failure or a SIGTERM while the next one starts leaves nothing behind)."""
    from handlers.archive import ServingOptions, WeightsSource, build_archive
    from harness.bench.gateway import start_gateway_process, stop_gateway_process
    from services.torchserve import Ports, TorchServeConfig, TorchServeProcess

    serving = ServingOptions(
        batch_size=settings.batch_size,
        max_batch_delay_ms=settings.max_batch_delay_ms,
        torch_threads=settings.threads,
        device="gpu" if settings.device == "gpu" else "cpu",
        decode_cache_mb=settings.decode_cache_mb,
        cpu_slice_ms=settings.cpu_slice_ms,
        keep_freed_mb=settings.keep_freed_mb,
        engines_at_once=settings.engines_at_once,
    )
    for name in settings.models:
        weights = WeightsSource(input_size=settings.size)
        own = dataclasses.replace(serving, workers=workers[name])
        build_archive(name, root / "store", weights=weights, serving=own)
    config = TorchServeConfig(
        model_store=root / "store",
        run_dir=root / "run",
        ports=Ports(0, 0, 0, 0, 0),
        cores=settings.cores,
    )
    torchserve = TorchServeProcess(config.with_free_ports()).start(timeout_s=600)
    running.callback(torchserve.stop)
    say(f"TorchServe ready in {torchserve.startup_s:.0f}s with {len(settings.models)} models")
    # Room for every client's fan-out: shedding would measure the bound, not the stack.
    room = max(settings.concurrency) * len(settings.models) + len(settings.models)
    gateway = start_gateway_process(torchserve.config, root, http=True, max_in_flight=room)
    running.callback(stop_gateway_process, gateway[0])
    _wait_answering(gateway[1], settings.models)
    return torchserve, gateway


def _wait_answering(target: str, models: Sequence[str], timeout_s: float = 300.0) -> None:
    """Until the gateway serves and every model has answered once (workers loaded)."""
    from ptxplain.errors import BackendError
    from services.gateway.client import ExplainerClient

    image = _tiny_png()
    deadline = time.monotonic() + timeout_s
    with ExplainerClient(target) as client:
        client.wait_serving(timeout_s)
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                response, _ = client.explain(image, models, timeout_s=60)
                failed = [i.model for i in response.results if i.status.code != 0]
                if not failed:
                    return
                last = f"{failed} not ready"
            except Exception as exc:  # not ready yet: retried until the deadline
                last = str(exc)
            time.sleep(0.5)
    raise BackendError(f"models {list(models)} never all answered in {timeout_s:.0f}s: {last}")


def _tiny_png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64), 128, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@dataclasses.dataclass
class _Tally:
    """What the clients saw during one level."""

    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    batch_sizes: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    stages: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    # Per model: the process CPU ms of forward + CAM per image (the batch's over its size).
    engine_cpu: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    requests: int = 0
    decodes: int = 0  # model answers whose worker decoded the image itself (not shared)

    def add(self, total_ms: float, results: Sequence[dict[str, Any]]) -> None:
        """A request counts (latency, throughput) only when every model answered OK."""
        with self.lock:
            self.requests += 1
            self.decodes += sum(1 for r in results if r["ok"] and not r["decode_shared"])
            if results and all(r["ok"] for r in results):
                self.latencies_ms.append(total_ms)
            else:
                self.failures["partial"] += 1
            # gateway_ms is the gateway's own time (in -> backend call, reply -> answer).
            inside = [r["gateway_ms"] + r["backend_ms"] for r in results if r["ok"]]
            self.stages["client <-> gateway"].append(total_ms - max(inside, default=0.0))
            for result in results:
                if not result["ok"]:
                    self.failures[result["code"]] += 1
                    continue
                self.batch_sizes[int(result["batch_size"])] += 1
                if result["batch_size"]:
                    cpu = result["forward_cam_cpu"] / result["batch_size"]
                    self.engine_cpu[result["model"]].append(cpu)
                handler = sum(result[k] for k in _HANDLER_STAGES)
                self.stages["gateway"].append(result["gateway_ms"])
                self.stages["TorchServe queue + transport"].append(result["backend_ms"] - handler)
                for key in _HANDLER_STAGES:
                    self.stages[key].append(result[key])


def _grpc_caller(target: str, models: Sequence[str]) -> Callable[[bytes], list[dict[str, Any]]]:
    from services.gateway.client import ExplainerClient

    client = ExplainerClient(target)

    def call(image: bytes) -> list[dict[str, Any]]:
        response, _ = client.explain(image, models)
        return [_grpc_result(item) for item in response.results]

    return call


def _grpc_result(item: Any) -> dict[str, Any]:
    t, g = item.result.timings, item.gateway_timings
    return {
        "ok": item.status.code == 0,
        "code": str(item.status.code),
        "batch_size": t.batch_size,
        "decode": t.decode_ms,
        "decode_shared": t.decode_shared,
        "preprocess": t.preprocess_ms,
        "core_wait": t.core_wait_ms,
        "forward_cam": t.forward_cam_ms,
        "forward_cam_cpu": t.forward_cam_cpu_ms,
        "model": item.model,
        "encode": t.encode_ms,
        "gateway_ms": g.gateway_ms,
        "backend_ms": g.backend_ms,
    }


def _http_caller(base: str, models: Sequence[str]) -> Callable[[bytes], list[dict[str, Any]]]:
    """One kept-alive HTTP/1.1 connection (the standard library's client, as lean as the gRPC
    stub: ``requests`` spent 1.0 ms more CPU per call, on the cores the stack is measured on)."""
    parts = urllib.parse.urlsplit(base)
    query = urllib.parse.urlencode({"models": ",".join(models)})
    path = f"{parts.path.rstrip('/')}/v1/explain?{query}"
    headers = {"Content-Type": "application/octet-stream"}
    connection = http.client.HTTPConnection(parts.netloc, timeout=300)

    def call(image: bytes) -> list[dict[str, Any]]:
        try:
            connection.request("POST", path, body=image, headers=headers)
            answer = connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException):
            connection.close()  # the next call opens a new connection
            raise
        if answer.getheader("Content-Type", "").split(";")[0] != "application/json":
            raise InternalError(f"HTTP {answer.status} without a JSON body: {body[:200]!r}")
        results: list[dict[str, Any]] = json.loads(body).get("results", [])
        return [_http_result(r) for r in results]

    return call


def _http_result(item: dict[str, Any]) -> dict[str, Any]:
    status = item.get("status", {})
    timings = (item.get("result") or {}).get("timings", {})
    gateway = item.get("gateway_timings", {})
    return {
        "ok": status.get("code") == "OK" and bool(item.get("result")),
        "code": str(status.get("code")),
        "batch_size": timings.get("batch_size", 0),
        "decode": timings.get("decode_ms", 0.0),
        "decode_shared": bool(timings.get("decode_shared", False)),
        "preprocess": timings.get("preprocess_ms", 0.0),
        "core_wait": timings.get("core_wait_ms", 0.0),
        "forward_cam": timings.get("forward_cam_ms", 0.0),
        "forward_cam_cpu": timings.get("forward_cam_cpu_ms", 0.0),
        "model": item.get("model", ""),
        "encode": timings.get("encode_ms", 0.0),
        "gateway_ms": gateway.get("gateway_ms", 0.0),
        "backend_ms": gateway.get("backend_ms", 0.0),
    }


def _level(
    make_caller: Callable[[], Callable[[bytes], list[dict[str, Any]]]],
    images: list[bytes],
    clients: int,
    settings: ThroughputSettings,
) -> dict[str, Any]:
    """A closed loop of ``clients`` threads, each sending every image in turn, each request a new
    file (:func:`_stamped`), measured in back-to-back windows of ``settings.seconds`` until the
    last :data:`STABLE_WINDOWS` agree (their mean latencies within ``settings.stability_pct``
    per cent, max over min: :func:`_spread`) or ``settings.max_windows`` have run, as Triton's
    perf_analyzer measures a level. A request counts in the window it finishes in; the
    level's figures are those of the last windows together, the earlier ones (the stack warming
    up) are listed but not counted."""
    callers = [make_caller() for _ in range(clients)]
    numbers = itertools.count(time.time_ns() // 1000)  # unique across levels and runs
    callers[0](_stamped(images[0], next(numbers)))  # warm-up (channels, first batch)
    current, stop = [_Tally()], threading.Event()

    def loop(index: int) -> None:
        call, turn = callers[index], index
        while not stop.is_set():
            image = _stamped(images[turn % len(images)], next(numbers))
            started = time.perf_counter()
            try:
                results = call(image)
            except Exception as exc:  # a failed call is counted, never fatal to the bench
                tally = current[0]
                with tally.lock:
                    tally.failures[type(exc).__name__] += 1
                continue
            current[0].add(_ms(started), results)
            turn += 1

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    for worker in workers:
        worker.start()
    windows: list[tuple[_Tally, float]] = []
    opened = time.perf_counter()
    while True:
        time.sleep(max(settings.seconds - (time.perf_counter() - opened), 0.0))
        closed, current[0] = current[0], _Tally()
        now = time.perf_counter()
        windows.append((closed, now - opened))
        opened = now
        spread = _spread(windows[-STABLE_WINDOWS:])
        if spread is not None and spread <= settings.stability_pct:
            break
        if len(windows) >= max(settings.max_windows, STABLE_WINDOWS):
            break
    stop.set()
    for worker in workers:
        worker.join()
    counted = windows[-STABLE_WINDOWS:]
    summary = _summary(_merged([t for t, _ in counted]), sum(wall for _, wall in counted))
    summary["windows_per_s"] = [len(t.latencies_ms) / wall for t, wall in windows]
    summary["windows_mean_ms"] = [
        statistics.fmean(t.latencies_ms) if t.latencies_ms else None for t, _ in windows
    ]
    summary["spread_pct"] = _spread(counted)
    summary["stable"] = summary["spread_pct"] is not None and (
        summary["spread_pct"] <= settings.stability_pct
    )
    return summary


def _spread(windows: Sequence[tuple[_Tally, float]]) -> float | None:
    """Per cent by which the largest of the windows' mean latencies exceeds the smallest; None
    with fewer than :data:`STABLE_WINDOWS` windows or a window without an answered request.

    In a closed loop of C clients images/s is C over the mean latency (Little's law), so the mean
    latencies judge both. The windows' own counts are lumpy: a batch of up to ``batch_size``
    requests finishes at once (at 12 images/s, one batch of 8 is 13 % of a 5 s window's count),
    which alone would keep many a steady level from agreeing within 10 %."""
    if len(windows) < STABLE_WINDOWS or any(not t.latencies_ms for t, _ in windows):
        return None
    means = [statistics.fmean(t.latencies_ms) for t, _ in windows]
    return 100.0 * (max(means) / min(means) - 1.0)


def _merged(tallies: Sequence[_Tally]) -> _Tally:
    """One tally holding everything the given ones saw."""
    merged = _Tally()
    for tally in tallies:
        merged.latencies_ms += tally.latencies_ms
        merged.failures.update(tally.failures)
        merged.batch_sizes.update(tally.batch_sizes)
        for key, values in tally.stages.items():
            merged.stages[key] += values
        for key, values in tally.engine_cpu.items():
            merged.engine_cpu[key] += values
        merged.requests += tally.requests
        merged.decodes += tally.decodes
    return merged


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(tally: _Tally, elapsed_s: float) -> dict[str, Any]:
    lat = tally.latencies_ms
    return {
        "requests": len(lat),
        "per_s": len(lat) / elapsed_s,
        "p50_ms": _quantile(lat, 0.5),
        "p95_ms": _quantile(lat, 0.95),
        "p99_ms": _quantile(lat, 0.99),
        "failures": dict(tally.failures),
        "batch_sizes": dict(sorted(tally.batch_sizes.items())),
        "decodes_per_request": tally.decodes / max(tally.requests, 1),
        "stages_ms": {k: statistics.median(v) for k, v in tally.stages.items() if v},
        "engine_cpu_ms_per_image": {
            m: statistics.median(v) for m, v in sorted(tally.engine_cpu.items()) if v
        },
    }


def run_throughput_bench(settings: ThroughputSettings, say: Say = print) -> dict[str, Any]:
    """Build, start, measure, stop; return every figure."""
    keep_freed_memory(settings.keep_freed_mb)  # the reference's allocator as the workers'
    with tempfile.TemporaryDirectory(prefix="ptxplain-bench-throughput-") as tmp:
        root = Path(tmp)
        images = _phantom_images(settings, root)
        say(f"{len(images)} phantom DICOMs of {settings.image_size} px")
        reference = _reference(settings, images)
        say(
            f"in-process: {reference['image_ms_batch1']:.0f} ms per image for all models at "
            f"batch 1, {reference['image_ms_batched']:.0f} ms batched"
        )
        saturated = _in_process_saturated(settings, images)
        say(
            f"in-process on every core at once ({saturated['processes']} processes): "
            f"{saturated['per_s']:.2f} images/s"
        )
        plan = _plan(settings, reference)
        for line in plan["lines"]:
            say(line)
        levels: dict[str, dict[int, Any]] = {}
        # The machine's speed drifts by several per cent over minutes (once 171 -> 139 ms an
        # image within one run), so each transport is read against the reference measured just
        # before and just after its own levels: between two transports, with the stack idle.
        measured_at = [reference]
        with contextlib.ExitStack() as running:  # stops the gateway, then TorchServe
            started = _start_stack(settings, plan["workers"], root, say, running)
            _, (_, grpc_target, http_base) = started
            makers = {
                "grpc": lambda: _grpc_caller(grpc_target, settings.models),
                "http": lambda: _http_caller(http_base, settings.models),
            }
            for index, transport in enumerate(settings.transports):
                levels[transport] = {}
                for clients in settings.concurrency:
                    level = _level(makers[transport], images, clients, settings)
                    levels[transport][clients] = level
                    say(
                        f"{transport} x{clients}: {level['per_s']:.2f}/s, "
                        f"p50 {level['p50_ms']:.0f} ms, batches {level['batch_sizes']}, "
                        f"{_windows_text(level, settings.stability_pct)}"
                    )
                if index < len(settings.transports) - 1:
                    between = _reference(settings, images)
                    measured_at.append(between)
                    say(
                        f"in-process between the transports (the stack idle): "
                        f"{between['image_ms_batched']:.0f} ms batched"
                    )
        after = _reference(settings, images)
        measured_at.append(after)
        say(f"in-process again after the stack: {after['image_ms_batched']:.0f} ms batched")
    return {
        "settings": dataclasses.asdict(settings),
        "reference": _mean_reference(reference, after),
        "reference_by_transport": {
            transport: _mean_reference(measured_at[i], measured_at[i + 1])
            for i, transport in enumerate(levels)
        },
        "in_process_saturated": saturated,
        "plan": plan,
        "stack": levels,
    }


def _windows_text(level: dict[str, Any], stability_pct: float) -> str:
    """How many windows a level ran and whether its counted ones agreed."""
    spread = level.get("spread_pct")
    agreed = (
        f"last {STABLE_WINDOWS} within {spread:.0f}%"
        if spread is not None and level.get("stable")
        else f"UNSTABLE: last {STABLE_WINDOWS} "
        + (f"{spread:.0f}% apart" if spread is not None else "not all answered")
        + f" (> {stability_pct:g}%)"
    )
    return f"{len(level['windows_per_s'])} windows, {agreed}"


def _saturated_lines(measured: dict[str, Any] | None, ref: dict[str, Any]) -> list[str]:
    if not measured:
        return []
    return [
        f"in-process on every core at once ({measured['processes']} processes, "
        f"{measured['seconds']:.0f} s, measured): {measured['per_s']:.2f} images/s = "
        f"{measured['per_s'] / ref['limit_per_s_batched']:.2f} x the batched limit"
    ]


def _cpu_lines(best: dict[str, Any], ref: dict[str, Any], cores: int) -> list[str]:
    """Where the CPU of one image goes at saturation, in the stack against in-process: the
    engines' forward + CAM (each worker's own CPU time, from the results) and the rest."""
    engines = best.get("engine_cpu_ms_per_image") or {}
    per_model = ref["per_model"]
    if not engines or set(engines) != set(per_model) or not best["per_s"]:
        return []
    pairs = ", ".join(
        f"{m} {engines[m]:.2f} / {per_model[m]['batched_ms']:.2f} "
        f"({engines[m] / per_model[m]['batched_ms']:.2f})"
        for m in per_model
    )
    stack_engines = sum(engines.values())
    ref_engines = sum(m["batched_ms"] for m in per_model.values())
    stack_all = cores * 1000.0 / best["per_s"]
    return [
        f"{'':5} engine CPU ms per image at saturation, stack / in-process (ratio): {pairs}; "
        f"all {stack_engines:.1f} / {ref_engines:.1f} ({stack_engines / ref_engines:.2f})",
        f"{'':5} CPU ms per image at saturation ({cores} cores / img/s): {stack_all:.1f} "
        f"against {ref['image_ms_batched']:.1f} in-process; engines {stack_engines:.1f} "
        f"against {ref_engines:.1f}, everything else (decoding, preparing, TorchServe, the "
        f"gateway, the clients) {stack_all - stack_engines:.1f} against "
        f"{ref['image_ms_batched'] - ref_engines:.1f}",
    ]


def report_lines(figures: dict[str, Any]) -> list[str]:
    """One table per transport, with the two ratios against the reference."""
    s, ref = figures["settings"], figures["reference"]
    lines = [
        f"{len(s['models'])} models ({', '.join(s['models'])}) at {s['size']} px, "
        f"{s['threads']} torch thread(s) each, batchSize {s['batch_size']} / maxBatchDelay "
        f"{s['max_batch_delay_ms']} ms, {s['cores']} cores, {s['image_size']} px phantom DICOMs",
        f"decoding: {ref['decode_ms']:.1f} ms per decode, "
        + (
            "once per request (decodes shared between workers)"
            if s["decode_cache_mb"]
            else "once per model (decode sharing off)"
        )
        + "; worker time slice: "
        + (f"{s['cpu_slice_ms']} ms" if s["cpu_slice_ms"] else "the kernel's")
        + "; freed memory kept: "
        + (f"{s['keep_freed_mb']} MiB" if s.get("keep_freed_mb") else "no")
        + "; engines at once: "
        + _at_once_text(s.get("engines_at_once")),
        "in-process reference"
        + (
            " (mean of before and after the stack: {:.0f} / {:.0f} ms batched)".format(
                *ref["batched_ms_before_after"]
            )
            if "batched_ms_before_after" in ref
            else ""
        )
        + f": {ref['image_ms_batch1']:.0f} ms/image at batch 1 "
        f"(limit {ref['limit_per_s_batch1']:.2f}/s), {ref['image_ms_batched']:.0f} ms/image "
        f"batched (limit {ref['limit_per_s_batched']:.2f}/s)"
        + (
            f"; medians of {s['repeats']} timed batches per model "
            f"(the best of them: {ref['image_ms_batched_best']:.0f} ms/image batched)"
            if "image_ms_batched_best" in ref
            else ""
        ),
        *_saturated_lines(figures.get("in_process_saturated"), ref),
        *figures.get("plan", {}).get("lines", []),
    ]
    measured = figures.get("in_process_saturated")
    overall, around = ref, figures.get("reference_by_transport") or {}
    for transport, levels in figures["stack"].items():
        ref = around.get(transport, overall)
        if len(around) > 1 and transport in around:
            before, after = ref["batched_ms_before_after"]
            lines.append(
                f"{transport} against the reference measured around its own levels (before / "
                f"after: {before:.0f} / {after:.0f} ms batched): "
                f"limit {ref['limit_per_s_batched']:.2f}/s"
            )
        lines.append(
            f"{transport:5} {'C':>3} {'img/s':>7} {'x limit':>8} {'p50':>7} {'p95':>7} "
            f"{'p99':>7}  batch sizes formed"
        )
        for clients, level in sorted(levels.items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"{'':5} {clients:>3} {level['per_s']:7.2f} "
                f"{level['per_s'] / ref['limit_per_s_batched']:8.2f} {level['p50_ms']:7.0f} "
                f"{level['p95_ms']:7.0f} {level['p99_ms']:7.0f}  {level['batch_sizes']}"
                + (f"  failures {level['failures']}" if level["failures"] else "")
                + (
                    f"  {_windows_text(level, s['stability_pct'])}"
                    if "windows_per_s" in level
                    else ""
                )
            )
        best = max(levels.values(), key=lambda level: level["per_s"])
        one = levels.get(1) or levels.get("1")
        lines.append(
            f"{'':5} saturated / batched limit: {best['per_s'] / ref['limit_per_s_batched']:.2f} "
            f"(target >= 0.85)"
            + (
                f" (against the best timed batches: "
                f"{best['per_s'] * ref['image_ms_batched_best'] / (s['cores'] * 1000.0):.2f})"
                if "image_ms_batched_best" in ref
                else ""
            )
            + (
                f"; concurrency-1 p50 / in-process image: "
                f"{one['p50_ms'] / ref['image_ms_batch1']:.2f} (target <= 1.25)"
                if one
                else ""
            )
        )
        if measured:
            lines.append(
                f"{'':5} saturated / in-process on every core at once: "
                f"{best['per_s'] / measured['per_s']:.2f}"
            )
        stages = ", ".join(f"{k} {v:.1f}" for k, v in best["stages_ms"].items())
        lines.append(f"{'':5} median ms per stage at saturation: {stages}")
        lines.extend(_cpu_lines(best, ref, s["cores"]))
        if "decodes_per_request" in best:
            lines.append(
                f"{'':5} decodes per request at saturation: {best['decodes_per_request']:.2f} "
                f"(of {len(s['models'])} models; the others read a shared decode)"
            )
    return lines
