"""Run the gateway in the foreground: gRPC (ptxplain.v1.Explainer, health, reflection) and its
HTTP/JSON twin, fanning each request out to every model on the configured TorchServe backends.

  ptxplain gateway --config gateway.yaml
  PTXPLAIN_GATEWAY_CONFIG=gateway.yaml ptxplain gateway --grpc-port 50051 --http-port 8000

The config (YAML; keys in docs/gateway.md) maps models to backends. Flags override its
listen address and ports. Logs are JSON lines on stderr (--plain-logs for text). SIGTERM or
Ctrl-C stops it gracefully (calls in flight get grace_s seconds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "gateway"
HELP = "run the gRPC + HTTP gateway in front of TorchServe"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file (default: $PTXPLAIN_GATEWAY_CONFIG)")
    parser.add_argument("--host", help="bind address (overrides the config)")
    parser.add_argument("--grpc-port", type=int, help="gRPC port (0 = any free port)")
    parser.add_argument("--http-port", type=int, help="HTTP port (0 = any free port)")
    parser.add_argument("--no-http", action="store_true", help="serve gRPC only")
    parser.add_argument("--plain-logs", action="store_true", help="text logs instead of JSON")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    values: dict[str, object] = {}
    if args.host is not None:
        values["host"] = args.host
    if args.grpc_port is not None:
        values["grpc_port"] = args.grpc_port
    if args.http_port is not None:
        values["http_port"] = args.http_port
    if args.no_http:
        values["http_port"] = None
    if args.plain_logs:
        values["json_logs"] = False
    return values


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from services.gateway import load_config, serve
    from services.gateway.logs import configure_logging

    config = load_config(args.config).replaced(**_overrides(args))
    configure_logging(config.json_logs, logging.DEBUG if args.verbose else logging.INFO)

    def announce(running: object) -> None:
        ports = {"grpc": running.grpc_port, "http": running.http_port}  # type: ignore[attr-defined]
        print(json.dumps({"serving": ports}), flush=True)

    asyncio.run(serve(config, on_ready=announce))
    return 0
