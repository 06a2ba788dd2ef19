"""Studies with a known answer, end to end on this machine (phantom, training, evaluation).

  ptxplain study shortcut --out reports/shortcut
  ptxplain study shortcut --out reports/shortcut --archs resnet18,vgg16_bn,vit_s16 --epochs 10

shortcut: trains on a phantom where a chest-drain-like tube marks a share of the positives,
evaluates on a phantom where the drain is on positives and negatives alike, and reports the
accuracy drop and where the heat goes (drain versus lesion): the harness must detect the
shortcut it planted. Finished models in OUT/models/ are reused. Writes OUT/shortcut.json and
prints the answer. See docs/evaluate.md.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

NAME = "study"
HELP = "studies with a known answer (shortcut: a planted chest-drain confounder)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study", metavar="STUDY", required=True)
    shortcut = sub.add_parser("shortcut", help="plant a drain shortcut and detect it")
    add = shortcut.add_argument
    add("--out", type=Path, default=Path("reports/shortcut"), help="output folder")
    add("--archs", default="resnet18,vit_s16", help="comma-separated architectures")
    add("--n-train", type=int, default=500, help="images of the correlated phantom (500)")
    add("--n-test", type=int, default=200, help="images of the decorrelated phantom (200)")
    add("--size", type=int, default=96, help="image side and input size in pixels (96)")
    add("--drain-share", type=float, default=0.9, help="share of training positives drained")
    add("--test-drain-share", type=float, default=0.5, help="share drained in the test set")
    add("--epochs", type=int, default=8, help="training epochs per model (8)")
    add("--threads", type=int, default=1, help="torch threads (1)")
    add("--seed", type=int, default=0, help="phantom and training seed (0)")
    add("--n-boot", type=int, default=1000, help="bootstrap resamples (1000)")


def run(args: argparse.Namespace) -> int:
    from harness.study.shortcut import ShortcutConfig, run_shortcut

    config = ShortcutConfig(
        out=args.out,
        archs=tuple(a.strip() for a in args.archs.split(",") if a.strip()),
        n_train=args.n_train,
        n_test=args.n_test,
        size=args.size,
        drain_share=args.drain_share,
        test_drain_share=args.test_drain_share,
        epochs=args.epochs,
        threads=args.threads,
        seed=args.seed,
        n_boot=args.n_boot,
    )
    result = run_shortcut(config, lambda line: print(f"[shortcut] {line}", flush=True))
    rule = "=" * 78
    print(f"{rule}\nSHORTCUT STUDY (SYNTHETIC)\n{rule}")
    for line in result["answer"]:
        print(textwrap.fill(line, width=78, initial_indent="* ", subsequent_indent="  "))
    print(f"{rule}\nwrote {config.out / 'shortcut.json'}")
    return 0
