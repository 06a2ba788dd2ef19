"""The flags every command that calls the gateway shares — one vocabulary, one set of defaults:

  --gateway ADDR        the gRPC address: host:port, host, or grpc://host:port (grpcs:// = TLS)
  --gateway-http URL    the HTTP address: http(s)://host:port or host:port (commands that use it)
  --token-file PATH     the client token, read from a file
  --token-env VAR       ... or from this environment variable (default PTXPLAIN_GATEWAY_TOKEN)
  --tls-ca PEM          CA certificate(s): connect with TLS
  --deadline SECONDS    the deadline of one request

Old spellings (``--timeout``, ``--timeout-s``, ``--explain-deadline``, ``--grpc-target``,
``--http-url``, ``--ca-file``) still work and warn. When a connection fails,
:func:`unreachable_error` says what to check: the stack (``make deploy``), and — by asking the
address — whether it is the gateway's HTTP port given for gRPC or the other way round.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ptxplain.errors import BackendError, ConfigError

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_GRPC",
    "DEFAULT_HTTP",
    "TOKEN_ENV",
    "GrpcAddress",
    "add_alias",
    "add_gateway_flags",
    "grpc_address",
    "http_url",
    "root_certificates",
    "token",
    "unreachable_error",
]

GRPC_PORT, HTTP_PORT = 50051, 8000
DEFAULT_GRPC = f"127.0.0.1:{GRPC_PORT}"
DEFAULT_HTTP = f"http://127.0.0.1:{HTTP_PORT}"
TOKEN_ENV = "PTXPLAIN_GATEWAY_TOKEN"
DEFAULT_DEADLINE_S = 120.0
_PROBE_S = 2.0
_CHECK = (
    "is the stack running (`make deploy`, or `ptxplain deploy`; `make deploy` prints its "
    f"ports)? The gateway listens for gRPC on port {GRPC_PORT} and HTTP on {HTTP_PORT} by default"
)


class _DeprecatedAlias(argparse.Action):
    """An old flag name: stores into the new flag's destination and says so on stderr."""

    def __init__(self, option_strings: list[str], dest: str, new_flag: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, **kw)
        self.new_flag = new_flag

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"{parser.prog}: warning: {option_string} is deprecated; use {self.new_flag}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_alias(parser: Any, old: str, new: str, *, type: Any = str) -> None:
    """Keep ``old`` working as a hidden, warning spelling of ``new``."""
    parser.add_argument(
        old,
        dest=new.lstrip("-").replace("-", "_"),
        type=type,
        action=_DeprecatedAlias,
        new_flag=new,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


def add_gateway_flags(
    parser: argparse.ArgumentParser,
    *,
    grpc: bool = True,
    http: bool = False,
    deadline: float | None = DEFAULT_DEADLINE_S,
    deadline_help: str = "deadline of one request, in seconds",
) -> argparse._ArgumentGroup:
    """The shared flags, in a "gateway" group (returned, for a command's own additions)."""
    group = parser.add_argument_group("gateway")
    if grpc:
        group.add_argument(
            "--gateway",
            default=DEFAULT_GRPC,
            metavar="ADDR",
            help="the gateway's gRPC address: host:port, or grpc://host:port (grpcs:// = TLS)",
        )
    if http:
        group.add_argument(
            "--gateway-http",
            default=DEFAULT_HTTP,
            metavar="URL",
            help="the gateway's HTTP address: http(s)://host:port, or host:port",
        )
    group.add_argument("--token-file", type=Path, metavar="PATH", help="client token file")
    group.add_argument(
        "--token-env",
        default=TOKEN_ENV,
        metavar="VAR",
        help="environment variable holding the client token, when no --token-file",
    )
    group.add_argument(
        "--tls-ca", type=Path, metavar="PEM", help="CA certificate(s): connect with TLS"
    )
    group.add_argument(
        "--deadline", type=float, default=deadline, metavar="SECONDS", help=deadline_help
    )
    return group


# -- resolving the flags -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GrpcAddress:
    """A gRPC target (``host:port``) and whether the address asked for TLS (``grpcs://``)."""

    target: str
    tls: bool = False

    @property
    def port(self) -> int:
        return int(self.target.rsplit(":", 1)[1])

    @property
    def host(self) -> str:
        return self.target.rsplit(":", 1)[0].strip("[]")


def _host_port(text: str, default_port: int, flag: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:  # "host" or "[::1]"
        return f"{text}:{default_port}"
    if not port.isdigit() or not host:
        raise ConfigError(f"{flag} {text!r}: expected host:port")
    return text


def grpc_address(text: str, flag: str = "--gateway") -> GrpcAddress:
    """``host:port``, ``host``, ``grpc://host:port``, ``grpcs://…`` or ``http(s)://host:port``
    (taken as the same host and port) as a gRPC target."""
    text = text.strip()
    if "://" not in text:
        return GrpcAddress(_host_port(text, GRPC_PORT, flag))
    parts = urlsplit(text)
    if parts.scheme not in ("grpc", "grpcs", "http", "https") or not parts.hostname:
        raise ConfigError(f"{flag} {text!r}: expected host:port or grpc://host:port")
    if parts.path not in ("", "/"):
        raise ConfigError(f"{flag} {text!r}: a gRPC address has no path")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = parts.port or (HTTP_PORT if parts.scheme.startswith("http") else GRPC_PORT)
    return GrpcAddress(f"{host}:{port}", tls=parts.scheme in ("grpcs", "https"))


def http_url(text: str, flag: str = "--gateway-http") -> str:
    """``http(s)://host:port`` or ``host:port`` as a base URL (no trailing slash)."""
    text = text.strip().rstrip("/")
    if "://" not in text:
        return f"http://{_host_port(text, HTTP_PORT, flag)}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{flag} {text!r}: expected http(s)://host:port (the gateway's HTTP port, "
            f"{HTTP_PORT} by default; gRPC addresses go to --gateway)"
        )
    return text


def token(args: argparse.Namespace) -> str | None:
    """The client token: --token-file's content, else $--token-env, else None."""
    if args.token_file is None:
        return os.environ.get(args.token_env) or None
    try:
        text = args.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"--token-file {args.token_file}: {exc.strerror}") from exc
    if not text:
        raise ConfigError(f"--token-file {args.token_file} is empty")
    return text


def root_certificates(args: argparse.Namespace) -> bytes | None:
    if args.tls_ca is None:
        return None
    try:
        return bytes(args.tls_ca.read_bytes())
    except OSError as exc:
        raise ConfigError(f"--tls-ca {args.tls_ca}: {exc.strerror}") from exc


# -- saying what is wrong ------------------------------------------------------------------------


def _answers_http(host: str, port: int) -> bool:
    """Whether ``host:port`` is a ptxplain gateway's HTTP port (``/healthz`` says ok)."""
    import warnings

    import requests

    for scheme in ("http", "https"):
        try:
            with warnings.catch_warnings():  # only asking what answers: no certificate check
                warnings.simplefilter("ignore")
                url = f"{scheme}://{host}:{port}/healthz"
                answer = requests.get(url, timeout=_PROBE_S, verify=False)
        except requests.RequestException:
            continue
        return answer.status_code == 200 and answer.text.startswith('{"status"')
    return False


def _answers_grpc(host: str, port: int) -> bool:
    """Whether ``host:port`` speaks gRPC (its health service answers, whatever it says)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=_PROBE_S
            )
        except grpc.RpcError as exc:
            return exc.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
    return True


def unreachable_error(address: str, transport: str, detail: str) -> BackendError:
    """A connection failure, with what to check: the HTTP port given for gRPC (or the
    reverse) when that is what the address answers, else whether the stack runs."""
    if transport == "grpc":
        target = grpc_address(address)
        if _answers_http(target.host, target.port):
            return BackendError(
                f"{address} is the gateway's HTTP port, not its gRPC port (gRPC: {GRPC_PORT} by "
                f"default): try --gateway {target.host}:{GRPC_PORT}, or the HTTP API with "
                f"--gateway-http http://{target.host}:{target.port} where the command has it"
            )
    else:
        parts = urlsplit(http_url(address))
        host, port = parts.hostname or "", parts.port or HTTP_PORT
        if _answers_grpc(host, port):
            return BackendError(
                f"{address} is the gateway's gRPC port, not its HTTP port (HTTP: {HTTP_PORT} "
                f"by default): try --gateway-http http://{host}:{HTTP_PORT}, or gRPC with "
                f"--gateway {host}:{port}"
            )
    return BackendError(f"cannot reach the gateway at {address} ({transport}: {detail}); {_CHECK}")
