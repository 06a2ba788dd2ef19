"""``config.properties`` for TorchServe in a container, rendered by :class:`TorchServeConfig`.

The image bakes one (token authorization on, the secure default for a lone ``docker run``);
docker-compose.yml and k8s/ mount the one in k8s/base/model-server/config.properties, rendered
with token authorization off: there the model servers sit on a network only the gateway
reaches (an internal Compose network, NetworkPolicies in Kubernetes) and the gateway enforces
TLS and its own client token. Regenerate the committed copy after changing TorchServeConfig::

    python -m services.containers.torchserve_properties --no-token-auth \\
        --out k8s/base/model-server/config.properties

The frontend is sized for :data:`CORES` (the CPU each model-server pod requests in
k8s/model-group/deployment.yaml and the GPU overlay): the small-machine JVM flags and one netty
thread each, and the log4j2.xml the image carries in /app/services/torchserve/ (``vmargs``, which
``torchserve --foreground`` reads).

tests/deploy/test_torchserve_properties.py fails when the committed copy drifts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from services.torchserve.config import TorchServeConfig

__all__ = [
    "CONFIG_PATH",
    "CORES",
    "HOME",
    "LOG_CONFIG",
    "MODEL_STORE",
    "RUN_DIR",
    "container_config",
    "main",
    "render",
]

HOME = PurePosixPath("/home/model-server")
MODEL_STORE = HOME / "model-store"
RUN_DIR = HOME / "run"
CONFIG_PATH = PurePosixPath("/etc/ptxplain/torchserve/config.properties")
# Where the image's COPY of services/ puts the shipped log4j2.xml.
LOG_CONFIG = PurePosixPath("/app/services/torchserve/log4j2.xml")
# The model-server pods' CPU request (k8s/model-group/deployment.yaml, k8s/overlays/gpu).
CORES = 2
_HEADER = (
    "# Rendered by `python -m services.containers.torchserve_properties{flag}`: do not edit.\n"
)


def container_config(*, token_auth: bool) -> TorchServeConfig:
    """The settings every ptxplain model-server container runs with (all interfaces)."""
    return TorchServeConfig(
        model_store=Path(MODEL_STORE),
        run_dir=Path(RUN_DIR),
        host="0.0.0.0",
        token_auth=token_auth,
        log_config=Path(LOG_CONFIG),
        cores=CORES,
    )


def render(*, token_auth: bool) -> str:
    flag = "" if token_auth else " --no-token-auth"
    return _HEADER.format(flag=flag) + container_config(token_auth=token_auth).render()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--token-auth",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TorchServe token authorization (default on)",
    )
    parser.add_argument("--out", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    text = render(token_auth=args.token_auth)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
