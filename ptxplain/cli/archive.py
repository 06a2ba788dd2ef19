"""Build TorchServe model archives (<name>.mar) for registry architectures.

  ptxplain archive --arch resnet50 --checkpoint checkpoints/resnet50/weights.safetensors --out model_store
  ptxplain archive --arch vit_s16 --random-init --seed 0 --input-size 64 --out model_store
  ptxplain archive --all --out model_store          (every architecture, random-init, default size)

A checkpoint (safetensors, or a .pt state dict, converted) needs its ptxplain-model.json beside it;
its keys and shapes are checked against the architecture before anything is written. The
serving options land in the archive's model-config YAML (workers, batching, timeout, device)
and its `ptxplain:` section (torch threads, byte and pixel caps). The archive is written
uncompressed (ZIP_STORED) and appears atomically.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ptxplain.machine import (
    DEFAULT_KEEP_FREED_MB,
    DEFAULT_SHARED_DECODE_MB,
    DEFAULT_SLICE_MS,
    parse_engines_at_once,
)

NAME = "archive"
HELP = "build TorchServe model archives (.mar)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", help="registry architecture (see `ptxplain archs`)")
    which.add_argument("--all", action="store_true", help="every architecture, random-init")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--checkpoint", type=Path, help="weights file (ptxplain-model.json beside)"
    )
    weights.add_argument(
        "--random-init", action="store_true", help="random weights (default without --checkpoint)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for random-init (default 0)")
    parser.add_argument("--input-size", type=int, help="random-init input size (default: spec's)")
    parser.add_argument("--name", help="model name (default: the architecture)")
    parser.add_argument("--out", type=Path, default=Path("model_store"), help="model store")
    serving = parser.add_argument_group("serving (model-config YAML)")
    serving.add_argument("--batch-size", type=int, default=8)
    serving.add_argument("--max-batch-delay", type=int, default=20, help="milliseconds")
    serving.add_argument("--workers", type=int, default=1)
    serving.add_argument("--torch-threads", type=int, default=1)
    serving.add_argument(
        "--autocast",
        choices=("bfloat16", "float16"),
        default=None,
        help="run the forward pass in this precision (default: float32); maps and logits "
        "come back in float32",
    )
    serving.add_argument("--response-timeout", type=int, default=120, help="seconds")
    serving.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),  # handlers.archive.DEVICES (imported lazily: torch)
        default="auto",
        help="auto: TorchServe's GPU where it has one, else the CPU; gpu: likewise, asked for; "
        "cpu: always the CPU (docs/archive.md)",
    )
    serving.add_argument("--max-bytes", type=int, help="handler's byte cap (default: handler's)")
    serving.add_argument("--max-pixels", type=int, help="handler's pixel cap (default: handler's)")
    add_worker_flags(serving, handler_defaults=True)


def engines_at_once(text: str) -> int | None:
    """``--engines-at-once``: auto -> None, else a count 0..4096."""
    try:
        return parse_engines_at_once(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The worker settings' flags (ptxplain/machine.py WORKER_SETTINGS), shared with ``ptxplain bench``:
# flag, its type, its default, its help.
WORKER_FLAGS: tuple[tuple[str, Callable[[str], int | None], int | str, str], ...] = (
    (
        "--decode-cache-mb",
        int,
        DEFAULT_SHARED_DECODE_MB,
        "MiB of decoded images shared with the host's other workers, so one request is decoded "
        "once for all models; 0 = each model decodes",
    ),
    (
        "--cpu-slice-ms",
        int,
        DEFAULT_SLICE_MS,
        "scheduler time slice each worker asks for (Linux 6.12+, 1-100); 0 = the kernel's",
    ),
    (
        "--keep-freed-mb",
        int,
        DEFAULT_KEEP_FREED_MB,
        "MiB of freed memory each worker keeps for its next batch instead of giving it back to "
        "the OS (glibc); 0 = the allocator's way",
    ),
    (
        "--engines-at-once",
        engines_at_once,
        "auto",
        "engines of the host's workers computing at once, so that a batch runs to its end on "
        "one core; 0 = no limit, auto = the cores each worker may use (no limit on a GPU)",
    ),
)


def add_worker_flags(
    group: Any, *, handler_defaults: bool, notes: Mapping[str, str] | None = None
) -> None:
    """The worker settings' flags. ``handler_defaults``: unset flags stay None and the archive
    leaves the handler its defaults (``ptxplain archive``); else they default to the same values
    (``ptxplain bench``). ``notes``: a flag's words appended to its help."""
    for flag, kind, default, words in WORKER_FLAGS:
        text = words + (notes or {}).get(flag, "")
        if handler_defaults:
            group.add_argument(flag, type=kind, help=f"{text} (default: the handler's, {default})")
        else:
            group.add_argument(
                flag, type=kind, default=default, help=f"{text} (default: %(default)s)"
            )


def run(args: argparse.Namespace) -> int:
    from handlers.archive import ServingOptions, WeightsSource, build_all, build_archive
    from ptxplain.errors import ConfigError

    serving = ServingOptions(
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay,
        workers=args.workers,
        torch_threads=args.torch_threads,
        autocast=args.autocast,
        response_timeout_s=args.response_timeout,
        device=args.device,
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        decode_cache_mb=args.decode_cache_mb,
        cpu_slice_ms=args.cpu_slice_ms,
        keep_freed_mb=args.keep_freed_mb,
        engines_at_once=args.engines_at_once,
    )
    if args.all:
        if args.checkpoint or args.name or args.input_size:
            raise ConfigError(
                "--all builds random-init archives: drop --checkpoint/--name/--input-size"
            )
        built = build_all(args.out, serving, seed=args.seed)
    else:
        weights = WeightsSource(
            checkpoint=args.checkpoint, seed=args.seed, input_size=args.input_size
        )
        built = [
            build_archive(args.arch, args.out, name=args.name, weights=weights, serving=serving)
        ]
    for archive in built:
        print(f"{archive.path}  {archive.size_bytes / 1e6:8.1f} MB  {archive.seconds:6.1f} s")
    return 0
