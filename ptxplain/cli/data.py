"""Read a pneumothorax data folder: list its images, make the patient-level split, convert it.

ptxplain data inspect DIR [--json]     per image: id, pseudonymous patient, label, mask pixels,
                                       size; then counts and every skipped file with its reason
ptxplain data split DIR                make (or check) DIR/ptxplain-split.json, 70/15/15 by patient
ptxplain data to-png DIR --out OUT     write the PNG layout (images/, masks/, labels.csv)

Layouts (detected, or --layout): SIIM-ACR DICOM tree + train-rle.csv / stage_2_train.csv;
images/ + masks/ + a labels CSV; positive/ + negative/ folders. The pseudonym key and the split
file live in DIR (or --state-dir). See docs/data.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

NAME = "data"
HELP = "inspect, split or convert a pneumothorax data folder"


def _read_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="the data folder")
    parser.add_argument(
        "--layout",
        default="auto",
        choices=("auto", "siim", "png", "folders"),
        help="default: detect",
    )
    parser.add_argument(
        "--rle",
        default="auto",
        choices=("auto", "relative", "absolute"),
        help="RLE encoding of the SIIM CSV (default: detect from all rows)",
    )
    parser.add_argument("--csv", type=Path, help="the label CSV (default: found in DIR)")
    parser.add_argument("--strict", action="store_true", help="fail on the first bad file or row")
    parser.add_argument(
        "--state-dir", type=Path, help="where the pseudonym key and split file live (default: DIR)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    inspect = actions.add_parser("inspect", help="list images and a summary")
    _read_options(inspect)
    inspect.add_argument("--json", action="store_true", help="print JSON")
    split = actions.add_parser("split", help="make or check the patient-level split")
    _read_options(split)
    split.add_argument("--seed", type=int, help="shuffle seed (default 0 for a new split)")
    split.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        help="image fractions (default 0.7 0.15 0.15 for a new split)",
    )
    to_png = actions.add_parser("to-png", help="convert to the PNG layout")
    _read_options(to_png)
    to_png.add_argument("--out", type=Path, required=True, help="an empty or missing folder")


def _open(args: argparse.Namespace) -> Any:
    from harness.data.dataset import ReadOptions, RleChoice
    from harness.data.layouts import open_dataset

    options = ReadOptions(
        layout=args.layout,
        rle=RleChoice(args.rle),
        csv=args.csv,
        strict=args.strict,
        state_dir=args.state_dir,
        progress=True,
    )
    return open_dataset(args.dir, options)


def _image_row(record: Any) -> dict[str, Any]:
    return {
        "image_id": record.image_id,
        "patient": record.patient,
        "label": int(record.label),
        "mask_pixels": record.mask_pixels,
        "rows": record.shape[0],
        "columns": record.shape[1],
    }


def _print_summary(summary: Any) -> None:
    labels = summary.label_counts
    print(
        f"\n{summary.layout} layout: {summary.n_images} images ({labels['positive']} positive, "
        f"{labels['negative']} negative), {summary.n_patients} patients"
    )
    if summary.rle_encoding:
        print(f"RLE: {summary.rle_encoding} ({summary.rle_reason})")
    for note in summary.notes:
        print(f"note: {note}")
    counts = ", ".join(f"{reason} {n}" for reason, n in summary.skip_counts().items())
    print(f"skipped: {len(summary.skipped)}" + (f" ({counts})" if counts else ""))
    for item in summary.skipped:
        print(f"  {item.reason.value}: {item.path}: {item.detail}")


def _inspect(args: argparse.Namespace) -> int:
    dataset = _open(args)
    rows = [_image_row(r) for r in dataset.records]
    if args.json:
        print(json.dumps({"images": rows, "summary": dataset.summary.to_json()}, indent=1))
        return 0
    print(f"{'image_id':<64} {'patient':<18} {'label':>5} {'mask_px':>8} {'size':>11}")
    for r in rows:
        mask = "-" if r["mask_pixels"] is None else str(r["mask_pixels"])
        size = f"{r['rows']}x{r['columns']}"
        print(f"{r['image_id']:<64} {r['patient']:<18} {r['label']:>5} {mask:>8} {size:>11}")
    _print_summary(dataset.summary)
    return 0


def _split(args: argparse.Namespace) -> int:
    from harness.data.split import SPLIT_FILENAME, SplitConfig, load_or_create_split

    dataset = _open(args)
    config = None
    if args.seed is not None or args.fractions is not None:
        config = SplitConfig(tuple(args.fractions or (0.7, 0.15, 0.15)), args.seed or 0)
    state_dir = args.state_dir or args.dir
    split = load_or_create_split(dataset, state_dir, config)
    print(
        f"{state_dir / SPLIT_FILENAME}: seed {split.config.seed}, fractions {split.config.fractions}"
    )
    for name, counts in split.counts(dataset).items():
        print(
            f"  {name:<5} {counts['images']:>6} images {counts['patients']:>6} patients "
            f"{counts['positive']:>6} positive"
        )
    return 0


def _to_png(args: argparse.Namespace) -> int:
    from harness.data.png_layout import write_png_layout

    dataset = _open(args)
    print(write_png_layout(dataset, args.out, show=True))
    return 0


def run(args: argparse.Namespace) -> int:
    return {"inspect": _inspect, "split": _split, "to-png": _to_png}[args.action](args)
