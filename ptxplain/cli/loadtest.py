"""Load-test the gateway with Locust: headless, bounded, over HTTP and gRPC (docs/loadtest.md).

  ptxplain loadtest --users 20 --duration 60s                 (the local stack of `make deploy`)
  ptxplain loadtest --protocol grpc --gateway gw:50051 --tls-ca ca.pem --token-file token

Runs `python -m locust -f loadtest/locustfile.py --headless` from the repository root with the
scenario in loadtest/scenario.yaml (task mix, images, deadlines, limits) and writes Locust's CSV
files and HTML report plus a summary JSON to --out (reports/loadtest/<name>*). Load shed by the
gateway (RESOURCE_EXHAUSTED / 429) is counted apart, never as a failure. Exit code: 0 when
every limit held, 1 when one was breached (failure ratio, p95, slow shedding, too few
requests), 2 for a bad option or scenario. The client token comes from --token-file or
$PTXPLAIN_GATEWAY_TOKEN (--token-env names another variable). Before Locust starts, the gateway
is asked once per protocol used; an address that does not answer gets a warning saying what to
check (the stack, or the HTTP port given for gRPC and the reverse).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

NAME = "loadtest"
HELP = "load-test the gateway with Locust (HTTP and gRPC)"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_LOCUSTFILE = _REPO_ROOT / "loadtest" / "locustfile.py"
_USER_CLASSES = {"http": ["HttpExplainUser"], "grpc": ["GrpcExplainUser"], "both": []}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ptxplain.cli.client_flags import add_alias, add_gateway_flags

    load = parser.add_argument_group("load")
    load.add_argument("--users", type=int, default=20, help="concurrent users (default 20)")
    load.add_argument("--spawn-rate", type=float, help="users started per second (default: all)")
    load.add_argument("--duration", default="60s", help="run time: 60s, 5m ... (default 60s)")
    load.add_argument("--protocol", choices=sorted(_USER_CLASSES), default="both")
    load.add_argument(
        "--scenario",
        type=Path,
        default=_REPO_ROOT / "loadtest" / "scenario.yaml",
        help="task mix, images, deadlines and limits (default: loadtest/scenario.yaml)",
    )
    load.add_argument("--images", type=Path, help="images folder, or a data folder with a split")
    gateway = add_gateway_flags(
        parser,
        http=True,
        deadline=None,
        deadline_help="seconds per explain call (default: the scenario's explain_deadline_s)",
    )
    add_alias(gateway, "--grpc-target", "--gateway")
    add_alias(gateway, "--http-url", "--gateway-http")
    add_alias(gateway, "--ca-file", "--tls-ca", type=Path)
    add_alias(gateway, "--explain-deadline", "--deadline", type=float)
    limits = parser.add_argument_group("limits (override the scenario's)")
    limits.add_argument("--max-failure-ratio", type=float, help="e.g. 0 or 0.01")
    limits.add_argument("--max-p95-ms", type=float, help="p95 limit for every task")
    out = parser.add_argument_group("reports")
    out.add_argument("--out", type=Path, default=Path("reports/loadtest"), help="report folder")
    out.add_argument("--name", help="report file prefix (default: <protocol>-<users>u)")


def _ptxplain_options(args: argparse.Namespace, summary: Path) -> list[str]:
    from ptxplain.cli.client_flags import grpc_address

    target = grpc_address(args.gateway).target
    options = ["--scenario", str(args.scenario.absolute()), "--grpc-target", target]
    options += ["--summary-file", str(summary)]
    for flag, value in (  # the Locust file's own option names
        ("--token-file", args.token_file),
        ("--ca-file", args.tls_ca),
        ("--images", args.images),
    ):
        if value is not None:
            options += [flag, str(Path(value).absolute())]
    for flag, number in (
        ("--explain-deadline", args.deadline),
        ("--max-failure-ratio", args.max_failure_ratio),
        ("--max-p95-ms", args.max_p95_ms),
    ):
        if number is not None:
            options += [flag, str(number)]
    return options


def locust_command(args: argparse.Namespace, prefix: Path) -> list[str]:
    """The Locust command line for these options; reports go to ``prefix``*."""
    from ptxplain.cli.client_flags import http_url

    command = [sys.executable, "-m", "locust", "-f", str(_LOCUSTFILE), "--headless"]
    command += ["--users", str(args.users), "--spawn-rate", str(args.spawn_rate or args.users)]
    command += ["--run-time", str(args.duration), "--stop-timeout", "10"]
    command += [
        "--host",
        http_url(args.gateway_http),
        "--only-summary",
        "--exit-code-on-error",
        "1",
    ]
    command += ["--csv", str(prefix), "--html", f"{prefix}.html"]
    command += _ptxplain_options(args, Path(f"{prefix}-summary.json"))
    return command + _USER_CLASSES[args.protocol]


def _check(args: argparse.Namespace) -> None:
    from ptxplain.errors import ConfigError

    if importlib.util.find_spec("locust") is None:
        raise ConfigError("locust is not installed: pip install -e '.[dev]' (or make setup)")
    if not _LOCUSTFILE.is_file():
        raise ConfigError(f"{_LOCUSTFILE} is missing (run from a source checkout)")
    if args.users < 1:
        raise ConfigError(f"--users must be >= 1, got {args.users}")
    if args.spawn_rate is not None and args.spawn_rate <= 0:
        raise ConfigError(f"--spawn-rate must be positive, got {args.spawn_rate}")
    if not args.scenario.is_file():
        raise ConfigError(f"--scenario {args.scenario} is not a file")


def _environment(args: argparse.Namespace) -> dict[str, str]:
    """Locust's environment: the token of --token-env under the name the Locust file reads."""
    from ptxplain.cli.client_flags import TOKEN_ENV, token

    env = dict(os.environ)
    if args.token_file is None and args.token_env != TOKEN_ENV:
        env.pop(TOKEN_ENV, None)
        if (value := token(args)) is not None:
            env[TOKEN_ENV] = value
    return env


def _unreachable(args: argparse.Namespace) -> list[str]:
    """What cannot be reached, with what to check: one health call per protocol used."""
    import grpc
    import requests

    from ptxplain.cli.client_flags import (
        grpc_address,
        http_url,
        root_certificates,
        unreachable_error,
    )
    from services.gateway.client import ExplainerClient

    problems = []
    if args.protocol in ("grpc", "both"):
        address = grpc_address(args.gateway)
        ca = root_certificates(args)
        with ExplainerClient(address.target, root_certificates=ca, tls=address.tls) as client:
            try:
                client.health(timeout_s=5.0)
            except grpc.RpcError as exc:
                detail = f"{exc.code().name}: {exc.details()}"
                problems.append(str(unreachable_error(args.gateway, "grpc", detail)))
    if args.protocol in ("http", "both"):
        verify = str(args.tls_ca) if args.tls_ca else True
        try:
            requests.get(f"{http_url(args.gateway_http)}/healthz", timeout=5.0, verify=verify)
        except requests.RequestException as exc:
            problems.append(str(unreachable_error(args.gateway_http, "http", str(exc))))
    return problems


def run(args: argparse.Namespace) -> int:
    _check(args)
    for problem in _unreachable(args):  # Locust would count every call as failed
        print(f"ptxplain loadtest: warning: {problem}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out.absolute() / (args.name or f"{args.protocol}-{args.users}u")
    command = locust_command(args, prefix)
    env = _environment(args)
    code = subprocess.run(command, cwd=_REPO_ROOT, check=False, env=env).returncode
    if Path(f"{prefix}-summary.json").exists():
        print(f"reports: {prefix}_stats.csv, {prefix}.html, {prefix}-summary.json")
    return code
