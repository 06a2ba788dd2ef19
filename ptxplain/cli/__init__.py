"""The ``ptxplain`` command line: one subcommand per module in this package.

Each subcommand module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Configuration is resolved here, once, and passed down. Every ``--help``
shows each option's default; the commands that call the gateway share one set of flags
(``ptxplain/cli/client_flags.py``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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
    "study",
    "loadtest",
    "images",
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring's own layout, and every option's default after its help (unless
    the help already names it, or there is none to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if not action.option_strings or "default" in text.lower() or not _shows(default):
            return text
        return f"{text} (default: %(default)s)"


def _shows(default: object) -> bool:
    """Whether a default is worth printing (not unset, off, empty or suppressed)."""
    return not (
        default is None or default is False or default is argparse.SUPPRESS or default in ("", [])
    )


def _give_every_option_a_help(parser: argparse.ArgumentParser) -> None:
    """argparse prints nothing for an option without help text: give it one, so its default
    shows too."""
    for action in parser._actions:
        if action.option_strings and action.help is None:
            action.help = "(default: %(default)s)" if _shows(action.default) else None


def _version() -> str:
    from ptxplain.build_info import versions

    v = versions()
    return (
        f"ptxplain {v['version']} (torch {v['torch']}, torchserve {v['torchserve']}, "
        f"python {v['python']})"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptxplain",
        description="Serve chest X-ray classifiers with their Grad-CAM explanations, "
        "and study how well each architecture diagnoses and explains.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"ptxplain.cli.{name}")
        cmd = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=HelpFormatter,
        )
        module.add_arguments(cmd)
        _give_every_option_a_help(cmd)
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
        with _sigterm_as_exit():
            return int(args._run(args))
    except PtxplainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM ends a command as Ctrl-C does, through its ``finally`` blocks, so that what it
    started for itself (``bench throughput``'s TorchServe and gateway, for one) is stopped, not
    left running; the exit status is 143 (128 + SIGTERM). Commands with their own handler (the
    gateway's graceful stop) replace this one while they run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


if __name__ == "__main__":
    sys.exit(main())
