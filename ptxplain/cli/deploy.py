"""Start the local stack in the background: TorchServe serving every archive in the model store,
then the gateway in front of it; wait until both report healthy; print the endpoints.

  ptxplain deploy [--model-store model_store] [--run-dir run] [--grpc-port 50051] [--http-port 8000]
  ptxplain stop [--run-dir run]

Everything lands in the run folder: TorchServe's config.properties, key_file.json, pid file and
tmp/, the gateway's gateway.yaml and gateway.pid, and both logs under run/logs/. A port already
taken, or a stack already running from the run folder, is an error naming it. When the model
store has no archive, random-init archives are built first for --default-models (labelled
untrained in ListModels and in every result). TorchServe keeps its own ports on 127.0.0.1
(8080 REST, 8081 management, 8082 metrics, 7070 gRPC, 7071 gRPC management).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.stack import StackConfig

NAME = "deploy"
HELP = "start TorchServe + the gateway in the background (see `ptxplain stop`)"


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=Path("run"), help="pid files, logs, keys")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds for calls in flight")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    add_run_dir(parser)
    parser.add_argument("--host", default="127.0.0.1", help="bind address of every server")
    parser.add_argument("--grpc-port", type=int, default=50051, help="gateway gRPC")
    parser.add_argument("--http-port", type=int, default=8000, help="gateway HTTP")
    ports = parser.add_argument_group("TorchServe's ports")
    ports.add_argument("--ts-inference-port", type=int, default=8080)
    ports.add_argument("--ts-management-port", type=int, default=8081)
    ports.add_argument("--ts-metrics-port", type=int, default=8082)
    ports.add_argument("--ts-grpc-port", type=int, default=7070)
    ports.add_argument("--ts-grpc-management-port", type=int, default=7071)
    parser.add_argument(
        "--default-models",
        default=",".join(_default_models()),
        help="architectures built (random-init) when the model store is empty",
    )
    parser.add_argument("--default-input-size", type=int, help="their input size (default: spec's)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for healthy")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=128,
        help="model calls in flight on the local TorchServe before the gateway sheds (429 / "
        "RESOURCE_EXHAUSTED); an explain with every model holds one per model",
    )


def _default_models() -> tuple[str, ...]:
    from services.stack import DEFAULT_MODELS

    return DEFAULT_MODELS


def stack_config(args: argparse.Namespace) -> StackConfig:
    from services.stack import StackConfig
    from services.torchserve import Ports

    if not hasattr(args, "model_store"):  # `ptxplain stop`: only the run folder matters
        return StackConfig(model_store=args.run_dir, run_dir=args.run_dir, grace_s=args.grace)
    return StackConfig(
        model_store=args.model_store,
        run_dir=args.run_dir,
        host=args.host,
        torchserve_ports=Ports(
            args.ts_inference_port,
            args.ts_management_port,
            args.ts_metrics_port,
            args.ts_grpc_port,
            args.ts_grpc_management_port,
        ),
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        default_models=tuple(m.strip() for m in args.default_models.split(",") if m.strip()),
        default_input_size=args.default_input_size,
        timeout_s=args.timeout,
        grace_s=args.grace,
        max_in_flight=args.max_in_flight,
    )


def run(args: argparse.Namespace) -> int:
    from services.stack import deploy

    endpoints = deploy(stack_config(args), say=lambda line: print(line, flush=True))
    print(json.dumps(endpoints, indent=2))
    print("stop with: make stop  (or: ptxplain stop --run-dir " + str(args.run_dir) + ")")
    return 0
