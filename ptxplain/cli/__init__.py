"""The ``ptxplain`` command line: one subcommand per module in this package.

Each subcommand module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Configuration is resolved here, once, and passed down.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ptxplain.errors import PtxplainError

__all__ = ["main"]

# Subcommand modules, in the order `ptxplain --help` lists them.
SUBCOMMANDS = (
    "archs",
    "protos",
    "bench",
    "archive",
    "torchserve",
    "data",
    "phantom",
    "train",
    "models",
    "gateway",
    "deploy",
    "stop",
    "explain",
    "evaluate",
    "loadtest",
    "images",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptxplain",
        description="Serve chest X-ray classifiers with their Grad-CAM explanations, "
        "and study how well each architecture diagnoses and explains.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"ptxplain.cli.{name}")
        cmd = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # pylibjpeg-openjpeg logs one INFO line per encoded image (phantom, `make models`)
        logging.getLogger("openjpeg").setLevel(logging.WARNING)
    try:
        return int(args._run(args))
    except PtxplainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
