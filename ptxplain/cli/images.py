"""Build the container images: the gateway (no torch) and the model server (TorchServe).

  ptxplain images [--only gateway|model-server] [--no-host-pip] [--torch-index-url URL]

With a Docker engine, `docker build`; without one, buildah (apt-installed when missing, as
root on Debian), with a local stand-in for python:3.11-slim-bookworm made from Debian's
packages when no registry serves it. The host's pip configuration (index URLs, find-links,
trust store) is handed to the build unless --no-host-pip. Tags: those of docker-compose.yml.
Build logs: build/images/. docs/containers.md.
"""

from __future__ import annotations

import argparse

NAME = "images"
HELP = "build the gateway and model-server container images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        action="append",
        choices=["gateway", "model-server"],
        help="build this image only (repeatable; default: both)",
    )
    parser.add_argument("--docker", default="docker", help="the docker binary (default: docker)")
    parser.add_argument(
        "--no-host-pip", action="store_true", help="do not hand the host's pip settings in"
    )
    parser.add_argument(
        "--torch-index-url",
        help="the model server's TORCH_INDEX_URL ('' = wherever pip is configured; default: "
        "PyTorch's CPU index, or the host's pip settings when that index does not answer)",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="do not apt-get install a missing buildah"
    )


def run(args: argparse.Namespace) -> int:
    from services.containers.engine import find_engine
    from services.containers.host_pip import host_pip
    from services.containers.images import IMAGES, BuildOptions, build_images, torch_index_url

    engine = find_engine(args.docker, install=not args.no_install)
    pip = None if args.no_host_pip else host_pip()
    names = args.only or list(IMAGES)
    torch_index = args.torch_index_url
    if torch_index is None and any(IMAGES[name].uses_torch for name in names):
        torch_index = torch_index_url(pip)
    options = BuildOptions(engine=engine, pip=pip, torch_index=torch_index)
    print(f"engine: {engine.kind} ({engine.binary})")
    for built in build_images(options, names).values():
        print(built.summary())
    return 0
