"""Fine-tune registry architectures for pneumothorax yes/no on a data folder's patient-level split.

  ptxplain train --arch resnet18 --data data/phantom --out checkpoints/resnet18
  ptxplain train --profile quick --data data/phantom --out checkpoints      (CPU, make deploy)
  ptxplain train --profile study --data data/siim --out checkpoints          (GPU, 224 px)

Starts from ImageNet weights when --weights FILE is given or a cached file is found locally
(torch hub checkpoints, Hugging Face hub cache; nothing is downloaded), else from scratch; the
log says which. Early stopping on validation AUROC; the state after every epoch is kept in
OUT/train-state.pt, so --resume continues an interrupted run. Writes OUT/weights.safetensors
and OUT/ptxplain-model.json (threshold: Youden's J on validation). The test split is never
read. A profile trains each model into OUT/<arch>/, skipping finished ones and resuming
interrupted ones; flags given here override the profile's values. See docs/train.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

NAME = "train"
HELP = "train (fine-tune) architectures on a data folder"

log = logging.getLogger(__name__)

# Flags a profile sets per architecture; given on the command line, they override it.
_PROFILE_FIELDS = (
    "input_size",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "optimizer",
    "patience",
    "warmup_epochs",
    "augment",
    "zero_init_residual",
    "clip_grad",
)


def _what(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", help="registry architecture (see `ptxplain archs`)")
    which.add_argument("--profile", help="train every model of a profile: quick or study")
    parser.add_argument("--data", type=Path, required=True, help="the data folder")
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default checkpoints/ARCH; with --profile, the root: checkpoints)",
    )


def _hyperparameters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hyperparameters (defaults: the profile's, or below)")
    group.add_argument("--input-size", type=int, help="square input side (default: spec's)")
    group.add_argument("--epochs", type=int, help="maximum epochs (20)")
    group.add_argument("--batch-size", type=int, help="mini-batch size (32)")
    group.add_argument("--lr", type=float, help="peak learning rate (1e-3)")
    group.add_argument("--weight-decay", type=float, help="decoupled weight decay (1e-4)")
    group.add_argument("--optimizer", choices=("adamw", "sgd"), help="adamw (default) or sgd")
    group.add_argument("--patience", type=int, help="epochs without val AUROC gain (5)")
    group.add_argument("--warmup-epochs", type=int, help="linear warm-up epochs (1)")
    group.add_argument("--seed", type=int, default=0, help="random seed (0)")
    group.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="X-ray augmentation (default on; the quick profile: off)",
    )
    group.add_argument("--hflip", action="store_true", help="add random horizontal flips")
    group.add_argument(
        "--zero-init-residual",
        action=argparse.BooleanOptionalAction,
        help="from scratch, start ResNet blocks as the identity (default off)",
    )
    group.add_argument(
        "--clip-grad",
        type=float,
        metavar="NORM",
        help="clip the gradients' global L2 norm to NORM (default off)",
    )
    group.add_argument(
        "--teacher",
        type=Path,
        help="distil soft labels from this trained checkpoint folder (same data, same input "
        "size; not with --profile, whose entries name their own teacher)",
    )
    group.add_argument(
        "--distill-alpha",
        type=float,
        default=0.5,
        help="weight of the teacher's soft labels in the loss (0.5)",
    )
    group.add_argument(
        "--distill-temperature",
        type=float,
        default=2.0,
        help="softmax temperature of the distillation term (2.0)",
    )


def _runtime(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("weights, machine and run control")
    group.add_argument("--weights", type=Path, help="initial weights file (ImageNet or other)")
    group.add_argument(
        "--no-pretrained", action="store_true", help="ignore cached ImageNet weights: scratch"
    )
    group.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    group.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    group.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="training arithmetic; auto = bf16 where the hardware has it, else fp32",
    )
    group.add_argument("--resume", action="store_true", help="continue OUT/train-state.pt")
    group.add_argument("--overwrite", action="store_true", help="discard an earlier run in OUT")
    group.add_argument(
        "--force",
        action="store_true",
        help="retrain a finished model trained on other data or another recipe (identical "
        "finished runs are still skipped)",
    )
    group.add_argument(
        "--stop-after-epochs",
        type=int,
        metavar="N",
        help="stop once N epochs are done, leaving the run resumable",
    )
    group.add_argument(
        "--state-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="write OUT/train-state.pt after an epoch once this long has passed (60; 0: always)",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bars")
    group.add_argument("--layout", default="auto", choices=("auto", "siim", "png", "folders"))
    group.add_argument(
        "--state-dir", type=Path, help="where the pseudonym key and split file live (DIR)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _what(parser)
    _hyperparameters(parser)
    _runtime(parser)


def _base_config(args: argparse.Namespace, arch: str, out: Path) -> Any:
    from harness.data.dataset import ReadOptions
    from harness.train.augment import AugmentConfig
    from harness.train.pretrained import LocalWeightDirs
    from harness.train.run import TrainConfig, resolve_device, resolve_precision

    device = resolve_device(args.device)
    return TrainConfig(
        arch=arch,
        data=args.data,
        out=out,
        seed=args.seed,
        weights=args.weights,
        weight_dirs=None if args.no_pretrained else LocalWeightDirs.default(),
        threads=args.threads or len(os.sched_getaffinity(0)),
        device=device,
        precision=resolve_precision(args.precision, device),
        resume=args.resume,
        overwrite=args.overwrite,
        force=args.force,
        stop_after=args.stop_after_epochs,
        state_every_s=args.state_every,
        augment=AugmentConfig(enabled=args.augment is not False, hflip=args.hflip),
        read=ReadOptions(layout=args.layout, state_dir=args.state_dir, progress=True),
        progress=not args.no_progress,
        distill_alpha=args.distill_alpha,
        distill_temperature=args.distill_temperature,
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Profile fields given on the command line (``augment`` stays a bool here)."""
    return {k: getattr(args, k) for k in _PROFILE_FIELDS if getattr(args, k) is not None}


def _run_arch(args: argparse.Namespace) -> int:
    from harness.train.run import train

    base = _base_config(args, args.arch, args.out or Path("checkpoints") / args.arch)
    overrides = _overrides(args)
    overrides.pop("augment", None)  # already in base.augment
    result = train(dataclasses.replace(base, teacher=args.teacher, **overrides))
    if result.meta is None:
        print(f"{args.arch}: stopped after epoch {result.epochs}; --resume continues")
        return 0
    metrics = result.meta.metrics
    done = "skipped (this very run is there)" if result.epochs == 0 else f"{result.seconds:.0f}s"
    print(
        f"{args.arch}: val AUROC {metrics['val_auroc']:.4f} (epoch {metrics['best_epoch']:.0f}), "
        f"threshold {result.meta.threshold:.4f}, trained on {result.meta.trained_on}, {done} "
        f"-> {result.out}"
    )
    return 0


def _finished_meta(out: Path) -> Any:
    from ptxplain.models.meta import META_FILENAME, ModelMeta

    return ModelMeta.read(out / META_FILENAME)


def _run_profile(args: argparse.Namespace) -> int:
    from harness.train.profiles import get_profile, profile_configs, run_profile
    from ptxplain.errors import InvalidOptionError

    profile = get_profile(args.profile)
    if args.weights is not None:
        raise InvalidOptionError("--weights names one file; it cannot serve a whole --profile")
    if args.teacher is not None:
        raise InvalidOptionError("--teacher: a profile's entries name their own teacher")
    base = _base_config(args, profile.entries[0].arch, args.out or Path("checkpoints"))
    log.info("profile %s: %s", profile.name, profile.description)
    outcomes = run_profile(profile_configs(profile, base, _overrides(args)))
    print(
        f"{'model':<12}{'status':<10}{'epochs':>7}{'val AUROC':>11}{'seconds':>9}  trained on / output"
    )
    for o in outcomes:
        meta = o.result.meta if o.result else _finished_meta(o.out) if o.skipped else None
        status = "skipped" if o.skipped else "trained" if meta else "stopped"
        auroc = f"{meta.metrics['val_auroc']:.4f}" if meta else "-"
        epochs = str(o.result.epochs) if o.result else "-"
        on = meta.trained_on if meta else "-"
        print(
            f"{o.arch:<12}{status:<10}{epochs:>7}{auroc:>11}{o.wall_seconds:>9.0f}  {on}: {o.out}"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    return _run_profile(args) if args.profile else _run_arch(args)
