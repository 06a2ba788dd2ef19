"""Stop what `ptxplain deploy` (make deploy) started from a run folder: the gateway, then
TorchServe — only the processes named by the pid files there, each checked to be the one deploy
started (SIGTERM, then SIGKILL after the grace period).

  ptxplain stop [--run-dir run]
"""

from __future__ import annotations

import argparse

from ptxplain.cli.deploy import add_run_dir, stack_config

NAME = "stop"
HELP = "stop the stack `ptxplain deploy` started"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dir(parser)


def run(args: argparse.Namespace) -> int:
    from services.stack import stop

    stopped = stop(stack_config(args))
    print(
        f"stopped: {', '.join(stopped)}" if stopped else f"nothing was running from {args.run_dir}"
    )
    return 0
