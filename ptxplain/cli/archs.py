"""List the architecture registry: input size, normalization, CAM target layer, depth,
parameters and FLOPs (counted on the meta device at the default input size, 2 classes)."""

from __future__ import annotations

import argparse
import dataclasses
import json

NAME = "archs"
HELP = "list the architecture registry"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--no-stats", action="store_true", help="skip the parameter and FLOP counts (faster)"
    )


def _row(spec, with_stats: bool) -> dict:
    from ptxplain.models.registry import model_stats

    row = {k: v for k, v in dataclasses.asdict(spec).items() if k != "builder"}
    if with_stats:
        row.update(model_stats(spec))
    return row


def run(args: argparse.Namespace) -> int:
    from ptxplain.models.registry import list_specs

    rows = [_row(spec, not args.no_stats) for spec in list_specs()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':<16}{'family':<14}{'size':>5}{'depth':>6}{'params':>10}{'GFLOPs':>8}  target layer"
    print(header)
    for r in rows:
        params = f"{r['params'] / 1e6:.1f}M" if "params" in r else "-"
        flops = f"{r['flops'] / 1e9:.1f}" if "flops" in r else "-"
        study = " (study)" if r["in_study"] else ""
        print(
            f"{r['name']:<16}{r['family']:<14}{r['input_size']:>5}{r['depth']:>6}"
            f"{params:>10}{flops:>8}  {r['target_layer']}{study}"
        )
    return 0
