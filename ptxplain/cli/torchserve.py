"""Start, stop or inspect a TorchServe serving the archives of a model store.

  ptxplain torchserve start  --model-store model_store --run-dir run/torchserve [--port-base 8080]
  ptxplain torchserve status --run-dir run/torchserve [--port-base 8080]
  ptxplain torchserve stop   --run-dir run/torchserve
  ptxplain torchserve restart --model-store model_store --run-dir run/torchserve

`start` launches TorchServe in the background (its own process group; pid file, rendered
config.properties, key_file.json and logs/ in the run directory), waits until every archive in
the store has a READY worker, prints the addresses and exits 0; on failure it stops the server
and prints the log's tail. `stop` sends SIGTERM to the group (SIGKILL after --grace seconds).
`restart` stops the server if it runs (or cleans up after one that died), then starts it; a
gateway in front of it finds it again by itself within a second or two.
With --port-base N the ports are N (REST inference), N+1 (management), N+2 (metrics),
N+3 (gRPC inference), N+4 (gRPC management); without it TorchServe's 8080/8081/8082/7070/7071.
Use the same --run-dir and --port-base for all three actions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.torchserve import TorchServeConfig

NAME = "torchserve"
HELP = "start / stop / restart / status of a TorchServe serving a model store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("start", "stop", "restart", "status"))
    parser.add_argument(
        "--model-store", type=Path, default=Path("model_store"), help="folder of .mar archives"
    )
    parser.add_argument(
        "--run-dir", type=Path, default=Path("run/torchserve"), help="config, keys, logs, pid"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port-base", type=int, help="use ports N..N+4 (see above)")
    parser.add_argument(
        "--models", default="all", help="comma-separated archive names, or 'all' (default)"
    )
    parser.add_argument(
        "--no-token-auth", action="store_true", help="disable token authorization (not advised)"
    )
    parser.add_argument("--token-expiration-min", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1, help="default workers per model")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for ready")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds before SIGKILL")


def _config(args: argparse.Namespace) -> TorchServeConfig:
    from services.torchserve import Ports, TorchServeConfig

    ports = Ports.from_base(args.port_base) if args.port_base is not None else Ports()
    return TorchServeConfig(
        model_store=args.model_store,
        run_dir=args.run_dir,
        host=args.host,
        ports=ports,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        token_auth=not args.no_token_auth,
        token_expiration_min=args.token_expiration_min,
        default_workers_per_model=args.workers,
    )


def _addresses(config: TorchServeConfig) -> dict[str, str]:
    return {
        "inference": config.inference_url,
        "management": config.management_url,
        "metrics": config.metrics_url,
        "grpc_inference": config.grpc_inference_target,
        "grpc_management": config.grpc_management_target,
        "key_file": str(config.key_file),
        "log": str(config.log_path),
    }


def _start(config: TorchServeConfig, args: argparse.Namespace) -> int:
    from ptxplain.errors import ConfigError
    from services.torchserve import TorchServeProcess

    if not config.model_store.is_dir():
        raise ConfigError(f"--model-store {config.model_store} is not a folder")
    server = TorchServeProcess(config).start(timeout_s=args.timeout)
    print(
        json.dumps(
            {
                "pid": server.pid,
                "ready_s": round(server.startup_s or 0, 1),
                "models": config.expected_models(),
                **_addresses(config),
            },
            indent=2,
        )
    )
    return 0


def _status(config: TorchServeConfig) -> int:
    from services.torchserve import management_client
    from services.torchserve.process import running_pid

    pid = running_pid(config)
    report: dict[str, object] = {"running": pid is not None, "pid": pid}
    if pid is not None:
        with management_client(config) as management:
            models = {}
            for name in management.list_models():
                status = management.describe(name)
                models[name] = {
                    "workers": list(status.worker_states),
                    "batch_size": status.batch_size,
                }
        report.update(models=models, **_addresses(config))
    print(json.dumps(report, indent=2))
    return 0 if pid is not None else 1


def run(args: argparse.Namespace) -> int:
    from services.torchserve import stop_pid_file

    config = _config(args)
    if args.action == "restart":
        stopped = stop_pid_file(config, grace_s=args.grace)
        print("stopped; starting again" if stopped else "not running; starting")
    if args.action in ("start", "restart"):
        return _start(config, args)
    if args.action == "status":
        return _status(config)
    stopped = stop_pid_file(config, grace_s=args.grace)
    print("stopped" if stopped else f"no TorchServe running from {config.run_dir}")
    return 0
