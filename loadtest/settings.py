"""What one Locust process needs, resolved once from its command line (no Locust import here).

The locustfile adds ptxplain's options to Locust's parser (:func:`add_options`) and, on
Locust's ``init`` event, builds :class:`RunSettings` from the parsed options
(:func:`settings_from_options`) and hands them to the user classes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadtest.scenario import DEFAULT_SCENARIO, Scenario, load_scenario
from ptxplain.errors import ConfigError

__all__ = ["TOKEN_ENV", "RunSettings", "add_options", "settings_from_options"]

TOKEN_ENV = "PTXPLAIN_GATEWAY_TOKEN"


@dataclasses.dataclass(frozen=True)
class RunSettings:
    scenario: Scenario
    http_base: str
    grpc_target: str
    token: str | None = dataclasses.field(default=None, repr=False)
    root_certificates: bytes | None = dataclasses.field(default=None, repr=False)
    summary_file: Path | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC call metadata (the bearer token, when one is set)."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers (the bearer token, when one is set)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def add_options(parser: Any) -> None:
    """ptxplain's options on Locust's parser (a configargparse / argparse parser)."""
    group = parser.add_argument_group("ptxplain")
    group.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="scenario YAML")
    group.add_argument("--grpc-target", default="127.0.0.1:50051", help="gateway gRPC host:port")
    group.add_argument("--token-file", default="", help=f"client token file (else ${TOKEN_ENV})")
    group.add_argument("--ca-file", default="", help="PEM roots: gRPC over TLS")
    group.add_argument("--images", default="", help="images folder (overrides the scenario)")
    group.add_argument("--explain-deadline", type=float, default=0.0, help="seconds; 0 = scenario")
    group.add_argument("--max-failure-ratio", type=float, default=-1.0, help="<0 = scenario")
    group.add_argument("--max-p95-ms", type=float, default=0.0, help="all tasks; 0 = scenario")
    group.add_argument("--summary-file", default="", help="where to write the summary JSON")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


def _token(options: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    if options.token_file:
        token = _read(options.token_file, "--token-file").decode().strip()
        if not token:
            raise ConfigError(f"--token-file {options.token_file} is empty")
        return token
    return env.get(TOKEN_ENV) or None


def _with_overrides(scenario: Scenario, options: argparse.Namespace) -> Scenario:
    limits, images = scenario.limits, scenario.images
    if options.max_failure_ratio >= 0:
        limits = dataclasses.replace(limits, max_failure_ratio=options.max_failure_ratio)
    if options.max_p95_ms > 0:
        limits = dataclasses.replace(
            limits, max_p95_ms=dict.fromkeys(scenario.tasks, options.max_p95_ms)
        )
    if options.images:
        images = dataclasses.replace(images, folder=Path(options.images).absolute())
    deadline = options.explain_deadline or scenario.explain_deadline_s
    return dataclasses.replace(scenario, limits=limits, images=images, explain_deadline_s=deadline)


def settings_from_options(
    options: argparse.Namespace, env: Mapping[str, str] | None = None
) -> RunSettings:
    """The run's settings from Locust's parsed options (``--host`` is the HTTP base URL)."""
    env = os.environ if env is None else env
    scenario = _with_overrides(load_scenario(Path(options.scenario)), options)
    return RunSettings(
        scenario=scenario,
        http_base=(options.host or "http://127.0.0.1:8000").rstrip("/"),
        grpc_target=options.grpc_target,
        token=_token(options, env),
        root_certificates=_read(options.ca_file, "--ca-file") if options.ca_file else None,
        summary_file=Path(options.summary_file) if options.summary_file else None,
    )
