"""``ptxplain bench gateway``: what the gateway costs, measured side by side in one run.

Builds random-init archives at the given size into a temporary model store, starts a real
TorchServe (token auth on; one worker per model, batch size 1, ``threads`` torch threads) and
the gateway as its own process (``ptxplain gateway``), then times, interleaved per repeat and
at the same torch thread count:

* engine      in-process ``ExplanationEngine.explain`` (forward + Grad-CAM, batch 1) on the
              letterboxed image: the work itself, no serving;
* torchserve  one model through TorchServe's gRPC API directly (what TorchServe adds);
* gateway     the same through the gateway (client -> gateway -> TorchServe and back), for the
              first model alone and for every model in one fan-out request.

Also reported: the gateway's own time per call from its timings (request in -> backend call out,
backend reply in -> response out), the bytes it adds to TorchServe's result bytes, and the
pass-through gain (placing result bytes into the response vs parsing and re-serializing them).
Targets: gateway <= engine + 20 ms (first model); all models <= 1.1 x the sum of
the engines; gateway's own time <= 2 ms median.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import statistics
import subprocess
import tempfile
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.bench.engine import timed_ms

__all__ = ["GatewayBenchSettings", "run_gateway_bench", "start_gateway_process"]


@dataclasses.dataclass(frozen=True)
class GatewayBenchSettings:
    models: tuple[str, ...]
    size: int = 224
    repeats: int = 15
    threads: int = 1


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _image(size: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _engines(settings: GatewayBenchSettings, image: bytes) -> dict[str, Callable[[], object]]:
    """One in-process explain() per model on the letterboxed, normalized image."""
    import torch

    from ptxplain.explain.engine import ExplanationEngine
    from ptxplain.imaging.decode import DecodeLimits, decode_image
    from ptxplain.imaging.preprocess import letterbox, to_model_input
    from ptxplain.models.registry import get_spec

    pixels = decode_image(image, limits=DecodeLimits()).pixels
    runners: dict[str, Callable[[], object]] = {}
    for name in settings.models:
        spec = get_spec(name)
        canvas, _ = letterbox(pixels, settings.size)
        batch = to_model_input(canvas, spec.mean, spec.std)[None]
        engine = ExplanationEngine(spec.build(settings.size), spec)
        runners[name] = functools.partial(engine.explain, batch, ["positive"], ["gradcam"])
    torch.set_num_threads(settings.threads)
    return runners


def _start_torchserve(
    settings: GatewayBenchSettings, root: Path, say: Callable[[str], None]
) -> Any:
    from handlers.archive import ServingOptions, WeightsSource, build_archive
    from services.torchserve import Ports, TorchServeConfig, TorchServeProcess

    serving = ServingOptions(batch_size=1, max_batch_delay_ms=1, torch_threads=settings.threads)
    for name in settings.models:
        built = build_archive(
            name, root / "store", weights=WeightsSource(input_size=settings.size), serving=serving
        )
        say(f"archived {name} ({built.size_bytes / 1e6:.0f} MB, {built.seconds:.1f}s)")
    config = TorchServeConfig(
        model_store=root / "store", run_dir=root / "run", ports=Ports(0, 0, 0, 0, 0)
    )
    process = TorchServeProcess(config.with_free_ports()).start(timeout_s=600)
    say(f"TorchServe ready in {process.startup_s:.0f}s")
    return process


def start_gateway_process(
    ts_config: Any, root: Path, *, http: bool = False, max_in_flight: int = 32
) -> tuple[subprocess.Popen[bytes], str, str | None]:
    """``ptxplain gateway`` as its own process in front of ``ts_config``'s TorchServe, on free
    ports: (process, gRPC target, HTTP base URL or None)."""
    from services.stack import gateway_command

    config = {
        "grpc_port": 0,
        "http_port": 0 if http else None,
        "backends": [
            {
                "name": "local",
                "grpc": ts_config.grpc_inference_target,
                "management": ts_config.management_url,
                "key_file": str(ts_config.key_file),
                "max_in_flight": max_in_flight,
            }
        ],
    }
    path = root / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    command = gateway_command(path)
    log = (root / "gateway.log").open("wb")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
    assert process.stdout is not None
    try:
        ports = json.loads(process.stdout.readline())["serving"]
    except BaseException:  # it died before saying its ports, or we were stopped meanwhile
        process.kill()
        process.wait(30)
        raise
    base = f"http://127.0.0.1:{ports['http']}" if http else None
    return process, f"127.0.0.1:{ports['grpc']}", base


def stop_gateway_process(process: subprocess.Popen[bytes]) -> None:
    """Stop what :func:`start_gateway_process` started: SIGTERM (its graceful stop), then
    SIGKILL if it has not gone in 30 s."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)


def _pass_through_gain(raws: list[bytes]) -> dict[str, float]:
    """µs to assemble a response from result bytes: parse + re-serialize vs pass-through."""
    from ptxplain.v1 import explainer_pb2 as epb

    def reparse() -> bytes:
        out = epb.ExplainResponse()
        for raw in raws:
            item = out.results.add(model="m")
            item.result.ParseFromString(raw)
            item.status.CopyFrom(item.result.status)
        return out.SerializeToString()

    def pass_through() -> bytes:
        out = epb.ExplainResponseBytes()
        for raw in raws:
            status = epb.ExplainResultHead.FromString(raw).status
            out.results.add(model="m", status=status, result=raw)
        return out.SerializeToString()

    assert epb.ExplainResponse.FromString(pass_through()) == epb.ExplainResponse.FromString(
        reparse()
    )
    number = 200
    return {
        name: min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6
        for name, fn in (("reparse_us", reparse), ("pass_through_us", pass_through))
    }


def _own_times(responses: list[Any]) -> dict[str, float]:
    """Medians of the gateway's own time per model call, from its timings."""
    calls = [item.gateway_timings for response in responses for item in response.results]
    return {
        "in": _median([t.queue_ms for t in calls]),
        "out": _median([t.gateway_ms - t.queue_ms for t in calls]),
        "total": _median([t.gateway_ms for t in calls]),
    }


def _measure(
    settings: GatewayBenchSettings,
    ts: Any,
    gateway: Any,
    engines: dict[str, Callable[[], object]],
    image: bytes,
) -> dict[str, Any]:
    """Interleaved repeats; the order rotates each repeat so that no side always runs first
    (the first call after another process computed pays for cold caches)."""
    from ptxplain.v1 import explainer_pb2 as epb

    first, everything, native = settings.models[0], list(settings.models), epb.ExplainOptions()
    responses: list[Any] = []
    runners: dict[str, Callable[[], object]] = {
        "engine": engines[first],
        "torchserve": lambda: ts.predict(first, image),
        "gateway": lambda: gateway.explain(image, [first], native),
        "engine_sum": lambda: [run() for run in engines.values()],
        "gateway_all": lambda: responses.append(gateway.explain(image, everything, native)[0]),
    }
    for run in runners.values():
        run()  # warm-up
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for repeat in range(settings.repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed_ms(runners[name]))
    last = responses[-1]
    results = [item.result.SerializeToString() for item in last.results]
    size = {"response_bytes": last.ByteSize(), "result_bytes": sum(map(len, results))}
    big, _ = gateway.explain(image, everything, epb.ExplainOptions(map_size="input"))
    return {
        "medians_ms": {k: _median(v) for k, v in times.items()},
        "gateway_own_ms": _own_times(responses[1:]),
        "bytes": {
            **size,
            "added_per_model": (size["response_bytes"] - size["result_bytes"]) / len(everything),
        },
        "pass_through_native": _pass_through_gain(results),
        "pass_through_input_size": _pass_through_gain(
            [i.result.SerializeToString() for i in big.results]
        ),
    }


def run_gateway_bench(
    settings: GatewayBenchSettings, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Start everything, measure, stop everything; return the figures."""
    from services.gateway.client import ExplainerClient
    from services.torchserve import grpc_client

    image = _image(settings.size)
    with tempfile.TemporaryDirectory(prefix="ptxplain-bench-gateway-") as tmp:
        root = Path(tmp)
        torchserve = _start_torchserve(settings, root, say)
        gateway_process = None
        try:
            gateway_process, target, _ = start_gateway_process(torchserve.config, root)
            engines = _engines(settings, image)
            with grpc_client(torchserve.config) as ts, ExplainerClient(target) as gateway:
                gateway.wait_serving(120)
                figures = _measure(settings, ts, gateway, engines, image)
        finally:
            if gateway_process is not None:
                stop_gateway_process(gateway_process)
            torchserve.stop()
    return {"settings": dataclasses.asdict(settings), **figures}


def report_lines(figures: dict[str, Any]) -> list[str]:
    """The human-readable table, with each target met or MISSED."""
    m, own, size = figures["medians_ms"], figures["gateway_own_ms"], figures["bytes"]
    s = figures["settings"]
    first, n = s["models"][0], len(s["models"])
    ok = lambda cond: "met" if cond else "MISSED"  # noqa: E731
    lines = [
        f"{first} at {s['size']}px, batch 1, {s['threads']} torch thread(s), medians of {s['repeats']} interleaved repeats",
        f"  engine in-process      {m['engine']:8.1f} ms",
        f"  TorchServe gRPC        {m['torchserve']:8.1f} ms  (+{m['torchserve'] - m['engine']:.1f} ms)",
        f"  gateway end-to-end     {m['gateway']:8.1f} ms  (+{m['gateway'] - m['engine']:.1f} ms over the engine, "
        f"+{m['gateway'] - m['torchserve']:.1f} ms over TorchServe) -> target <= engine + 20 ms: "
        f"{ok(m['gateway'] <= m['engine'] + 20)}",
        f"all {n} models ({', '.join(s['models'])})",
        f"  sum of engines         {m['engine_sum']:8.1f} ms",
        f"  gateway, one request   {m['gateway_all']:8.1f} ms  ({m['gateway_all'] / m['engine_sum']:.2f}x) -> "
        f"target <= 1.1x: {ok(m['gateway_all'] <= 1.1 * m['engine_sum'])}",
        f"gateway's own time per model call: in -> backend {own['in']:.2f} ms, backend -> out "
        f"{own['out']:.2f} ms, total {own['total']:.2f} ms -> target <= 2 ms: {ok(own['total'] <= 2.0)}",
        f"bytes: response {size['response_bytes']} B for {size['result_bytes']} B of results "
        f"(+{size['added_per_model']:.0f} B per model)",
    ]
    for key in ("pass_through_native", "pass_through_input_size"):
        gain = figures[key]
        lines.append(
            f"assembling {n} results ({key.split('_', 2)[2]} maps): re-parse {gain['reparse_us']:.1f} us, "
            f"pass-through {gain['pass_through_us']:.1f} us"
        )
    return lines
