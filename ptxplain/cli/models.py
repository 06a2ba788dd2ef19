"""Prepare the embedded default models: a phantom data set, a training profile, archives.

  1. data:    unless DATA holds a data set, write the profile's synthetic phantom set there
  2. train:   `ptxplain train --profile PROFILE --data DATA --out CHECKPOINTS` (identical finished
              runs are skipped, interrupted ones resumed; one trained on other data or with
              another recipe stops with the difference unless --force)
  3. archive: one .mar per trained checkpoint into MODEL_STORE (an archive of this very
              checkpoint is kept; one trained on other data stops unless --force), each with
              --workers workers: `auto` plans them from the models' measured cost per image and
              --cores (handlers/placement.py; the plan and its reasons are printed), a count
              gives every model that many (--workers 1: one each)

First, every archive already in MODEL_STORE is checked against DATA: one trained on other data
stops the command with both named, unless --force (which retrains and rebuilds). `make deploy`
runs this with --if-empty: when MODEL_STORE already holds archives (and none is stale) it stops
after the check instead of training. With real data, point --data at it (SIIM-ACR layout or the
PNG / folder layouts; see docs/data.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

NAME = "models"
HELP = "build the default models: phantom data, quick training, archives"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path("data/phantom"), help="data folder")
    parser.add_argument(
        "--checkpoints", type=Path, default=Path("checkpoints"), help="training output root"
    )
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--profile", default="quick", help="training profile (quick | study)")
    parser.add_argument("--threads", type=int, help="torch threads for training (default: all)")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),  # handlers.archive.DEVICES (imported lazily: torch)
        default="auto",
        help="the archives' device: auto = the model server's GPU where it has one "
        "(docs/archive.md)",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default="auto",
        help="TorchServe workers per model: auto = planned from each model's measured cost "
        "and --cores (one each where the archives run on this machine's GPU), or a count for "
        "every model, e.g. 1 (default: %(default)s)",
    )
    parser.add_argument(
        "--cores",
        type=int,
        default=_cores(),
        help="cores the model server has, for --workers auto (default: this machine's, "
        "%(default)s)",
    )
    parser.add_argument(
        "--if-empty",
        action="store_true",
        help="only check the archives when MODEL_STORE already holds some (make deploy)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="retrain checkpoints and rebuild archives made from other data or another recipe",
    )


def _workers(text: str) -> int | None:
    from handlers.placement import parse_workers

    return parse_workers(text)


def _cores() -> int:
    from ptxplain.machine import cpu_cores

    return cpu_cores()


def _store_settled(plan: Any, args: argparse.Namespace, say: Any) -> bool:
    """Check the store against the data; True when --if-empty finds archives and none stale."""
    from harness.data.dataset import ReadOptions
    from harness.train.data import read_train_val
    from harness.train.embedded import check_store
    from ptxplain.errors import ConfigError

    if not any(plan.model_store.glob("*.mar")):
        return False
    stale = check_store(plan, read_train_val(plan.data, ReadOptions()).provenance, say)
    if stale and not args.force:
        raise ConfigError(
            " | ".join(stale) + ". Remove those archives (and their checkpoints), point --data "
            "at the data they were trained on, or retrain with --force (make deploy FORCE=1)"
        )
    if args.if_empty and not stale:
        say("store: archives present and none trained on other data; not training")
        return True
    return False


def run(args: argparse.Namespace) -> int:
    from harness.train.embedded import DefaultModelsPlan, archive_checkpoints, ensure_phantom
    from harness.train.profiles import get_profile
    from ptxplain.cli import main

    def say(line: str) -> None:
        print(f"[models] {line}", flush=True)

    started = time.perf_counter()
    plan = DefaultModelsPlan(
        args.data,
        args.checkpoints,
        args.model_store,
        get_profile(args.profile),
        args.device,
        workers=args.workers,
        cores=args.cores,
    )
    ensure_phantom(plan, say)
    if _store_settled(plan, args, say):
        return 0
    train = ["train", "--profile", plan.profile.name, "--data", str(plan.data)]
    train += ["--out", str(plan.checkpoints)]
    if args.threads:
        train += ["--threads", str(args.threads)]
    if args.force:
        train.append("--force")
    status = main(train)
    if status != 0:
        return status
    archive_checkpoints(plan, say, force=args.force)
    say(f"done in {time.perf_counter() - started:.0f}s")
    return 0
