"""Benchmarks that print side-by-side ratios (benchmarks, not timed tests).

  ptxplain bench gateway  gateway end-to-end vs in-process engine vs TorchServe alone, the
                          gateway's own time and bytes (harness/bench/gateway.py; --archs
                          'all' = the deploy set; --size default 224, --batches unused)
  ptxplain bench engine   per architecture: plain inference_mode forward, stock pytorch-grad-cam
                          (full backward) and ptxplain's engine (backward to the target layer
                          only); medians of interleaved repeats at one torch thread count.

Targets: ptxplain <= 1.3x the forward for every architecture at batch 1 and 8, and
a median <= 1.15x across architectures, at each architecture's standard size (224 px).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from ptxplain.cli.archive import add_worker_flags

NAME = "bench"
HELP = "benchmark the engine against a plain forward and stock grad-cam"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "suite", choices=("engine", "gateway", "throughput", "gpu"), help="what to benchmark"
    )
    parser.add_argument("--archs", default="all", help="comma-separated names, or 'all' / 'study'")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--size", type=int, default=None, help="input size (default: the arch's)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads (both sides)"
    )
    parser.add_argument(
        "--json", dest="json_out", default=None, help="also write rows to this file"
    )
    live = parser.add_argument_group("throughput (the live stack against the in-process limit)")
    live.add_argument(
        "--concurrency",
        default="1,4,8,16,32",
        help="closed-loop clients per level, comma-separated (default: 1,4,8,16,32)",
    )
    live.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="one measurement window, s: each level and transport runs windows until the last "
        "3 agree within --stability, and reports those 3 together (default: %(default)s)",
    )
    live.add_argument(
        "--stability",
        type=float,
        default=10.0,
        help="per cent by which the last 3 windows' mean latencies may differ, max over min, "
        "for a level to count as stable, as perf_analyzer's --stability-percentage (in a closed "
        "loop images/s is clients / mean latency) (default: %(default)s)",
    )
    live.add_argument(
        "--max-windows",
        type=int,
        default=10,
        help="windows a level runs at most; one still unstable then is reported as UNSTABLE "
        "(default: %(default)s)",
    )
    live.add_argument(
        "--transports", default="grpc,http", help="grpc and/or http (default: grpc,http)"
    )
    parser.add_argument(
        "--device",
        default="cuda",
        help="gpu suite: cuda, or cpu to run the same measurements here (default: cuda)",
    )
    live.add_argument(
        "--workers",
        type=_workers,
        default="auto",
        help="TorchServe workers per model: auto = planned from the in-process costs and "
        "--cores (handlers/placement.py), or a count for every model, e.g. 1 "
        "(default: %(default)s)",
    )
    live.add_argument(
        "--cores",
        type=int,
        default=_cores(),
        help="cores the limit counts and the plan and the frontend are sized for "
        "(default: this machine's, %(default)s)",
    )
    live.add_argument(
        "--image-size",
        type=int,
        default=256,
        help="side of the phantom DICOMs sent, px (a SIIM-ACR radiograph is 1024) "
        "(default: %(default)s)",
    )
    add_worker_flags(
        live,
        handler_defaults=False,
        notes={
            "--decode-cache-mb": " (and the reference then decodes per model too)",
            "--keep-freed-mb": " (and so does the reference)",
        },
    )
    live.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="TorchServe batchSize and the reference's (default: 8)",
    )


def _workers(text: str) -> int | None:
    from handlers.placement import parse_workers

    return parse_workers(text)


def _cores() -> int:
    from ptxplain.machine import cpu_cores

    return cpu_cores()


def _specs(selection: str) -> list:
    from ptxplain.models.registry import get_spec, list_specs

    if selection == "all":
        return list_specs()
    if selection == "study":
        return [s for s in list_specs() if s.in_study]
    return [get_spec(name.strip()) for name in selection.split(",") if name.strip()]


def run(args: argparse.Namespace) -> int:
    if args.suite == "gateway":
        return _gateway(args)
    if args.suite == "throughput":
        return _throughput(args)
    if args.suite == "gpu":
        return _gpu(args)
    import dataclasses

    import torch

    from harness.bench.engine import bench_arch, summarize

    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"torch {torch.__version__}, {args.threads} threads, medians of {args.repeats} repeats")
    print(
        f"{'arch':<16}{'batch':>6}{'forward ms':>12}{'stock ms':>10}{'ptxplain ms':>13}"
        f"{'stock/fwd':>11}{'ptx/fwd':>9}"
    )
    rows = []
    for spec in _specs(args.archs):
        for row in bench_arch(spec, batches, args.repeats, args.size):
            rows.append(row)
            print(
                f"{row.arch:<16}{row.batch:>6}{row.forward_ms:>12.1f}{row.stock_ms:>10.1f}"
                f"{row.ptxplain_ms:>13.1f}{row.stock_ratio:>11.2f}{row.ptxplain_ratio:>9.3f}",
                flush=True,
            )
    for line in summarize(rows, max_ratio=1.3, max_median=1.15):
        print(line)
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump([dataclasses.asdict(r) for r in rows], handle, indent=2)
    sys.stdout.flush()
    return 0


def _deploy_set(selection: str) -> tuple[str, ...]:
    """``all`` / ``study``: the models ``make deploy`` serves; else the names given."""
    from services.stack import DEFAULT_MODELS

    if selection in ("all", "study"):
        return DEFAULT_MODELS
    return tuple(a.strip() for a in selection.split(",") if a.strip())


def _emit(lines: list[str], figures: dict, json_out: str | None) -> int:
    for line in lines:
        print(line)
    if json_out:
        Path(json_out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _gateway(args: argparse.Namespace) -> int:
    from harness.bench.gateway import GatewayBenchSettings, report_lines, run_gateway_bench

    settings = GatewayBenchSettings(
        models=_deploy_set(args.archs),
        size=args.size or 224,
        repeats=args.repeats,
        threads=args.threads,
    )
    figures = run_gateway_bench(settings, say=_say)
    return _emit(report_lines(figures), figures, args.json_out)


def _throughput(args: argparse.Namespace) -> int:
    from harness.bench.throughput import ThroughputSettings, report_lines, run_throughput_bench

    settings = ThroughputSettings(
        models=_deploy_set(args.archs),
        size=args.size or 96,
        threads=args.threads,
        batch_size=args.batch_size,
        concurrency=tuple(int(c) for c in args.concurrency.split(",") if c.strip()),
        seconds=args.seconds,
        stability_pct=args.stability,
        max_windows=args.max_windows,
        repeats=args.repeats,
        transports=tuple(t.strip() for t in args.transports.split(",") if t.strip()),
        cores=args.cores,
        workers=args.workers,
        decode_cache_mb=args.decode_cache_mb,
        cpu_slice_ms=args.cpu_slice_ms,
        keep_freed_mb=args.keep_freed_mb,
        engines_at_once=args.engines_at_once,
        image_size=args.image_size,
    )
    figures = run_throughput_bench(settings, say=_say)
    return _emit(report_lines(figures), figures, args.json_out)


def _gpu(args: argparse.Namespace) -> int:
    from harness.bench.gpu import DeviceBenchSettings, report_lines, run_device_bench

    settings = DeviceBenchSettings(device=args.device, repeats=args.repeats)
    if args.archs not in ("all", "study"):
        names = tuple(a.strip() for a in args.archs.split(",") if a.strip())
        settings = dataclasses.replace(settings, models=names)
    if args.size:
        settings = dataclasses.replace(settings, size=args.size)
    if args.batches != "1,8":
        batches = tuple(int(b) for b in args.batches.split(","))
        settings = dataclasses.replace(settings, batches=batches)
    figures = run_device_bench(settings, say=_say)
    return _emit(report_lines(figures), figures, args.json_out)
