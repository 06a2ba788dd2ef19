"""Generate or check the Python stubs made from protos/ (the wire format's source of truth).

ptxplain protos generate   rewrite the committed stubs
ptxplain protos check      exit 1 when a committed stub differs from what protoc makes now
"""

from __future__ import annotations

import argparse

NAME = "protos"
HELP = "generate or check the gRPC / protobuf stubs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("generate", "check"))


def run(args: argparse.Namespace) -> int:
    from ptxplain.protos import REPO_ROOT, drift, generate

    if args.action == "generate":
        for path in generate():
            print(path.relative_to(REPO_ROOT))
        return 0
    stale = drift()
    for rel in stale:
        print(f"stale: {rel} (run `make protos`)")
    return 1 if stale else 0
