"""Write a synthetic chest radiograph set in the SIIM-ACR layout (DICOM tree + train-rle.csv).

Anatomy-like images (body, lungs with branching vessels, ribs, heart, diaphragm, noise, varied
exposure and patient size / position); positives carry a pneumothorax along a lung's apex or
lateral edge, and the mask is exactly that region. Same options and seed -> byte-identical
files. See docs/phantom.md.

    ptxplain phantom --out data/phantom --n 200 --seed 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

NAME = "phantom"
HELP = "write a synthetic pneumothorax data set (SIIM-ACR layout)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="an empty or missing folder")
    parser.add_argument("--n", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument(
        "--positive-fraction", type=float, default=0.5, help="fraction with a pneumothorax (0.5)"
    )
    parser.add_argument(
        "--confounder-fraction",
        type=float,
        default=0.0,
        help="fraction of positives that also get a chest drain, outside the mask (0.0)",
    )
    parser.add_argument(
        "--compressed-fraction",
        type=float,
        default=0.3,
        help="fraction saved as RLE Lossless / JPEG 2000 Lossless instead of native (0.3)",
    )
    parser.add_argument(
        "--lesion-contrast",
        type=float,
        default=1.0,
        help="scale of the lesion's darkening and pleural line (1.0; docs/phantom.md)",
    )


def run(args: argparse.Namespace) -> int:
    from pydicom.uid import ExplicitVRLittleEndian

    from harness.phantom.generate import PhantomConfig, generate_phantom
    from harness.progress import progress

    config = PhantomConfig(
        n=args.n,
        seed=args.seed,
        size=args.size,
        positive_fraction=args.positive_fraction,
        confounder_fraction=args.confounder_fraction,
        compressed_fraction=args.compressed_fraction,
        lesion_contrast=args.lesion_contrast,
    )
    start = time.perf_counter()
    result = generate_phantom(
        config,
        args.out,
        wrap=lambda plans: progress(plans, total=config.n, desc="phantom", enabled=True),
    )
    seconds = time.perf_counter() - start
    positives = sum(c.label for c in result.cases)
    tubes = sum(c.tube for c in result.cases)
    compressed = sum(c.transfer_syntax != ExplicitVRLittleEndian for c in result.cases)
    print(
        f"{args.out}: {config.n} images ({positives} positive, {tubes} with a drain, "
        f"{compressed} compressed) in {seconds:.1f}s ({config.n / seconds:.1f} images/s)"
    )
    return 0
