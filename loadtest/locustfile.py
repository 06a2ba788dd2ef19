"""Locust's entry point for load tests of the ptxplain gateway (docs/loadtest.md).

Run it through ``ptxplain loadtest`` / ``make loadtest``, or by hand from the repository root
(``python -m locust`` puts the working directory on sys.path, so `loadtest` imports)::

    python -m locust -f loadtest/locustfile.py --headless -u 20 -r 20 -t 60s \\
        --host http://127.0.0.1:8000 --grpc-target 127.0.0.1:50051 \\
        --csv reports/loadtest/run --html reports/loadtest/run.html

Users: ``GrpcExplainUser`` (gRPC) and ``HttpExplainUser`` (HTTP); name one to run only it.
At exit (standalone, or the master of a distributed run) the run is judged against the
scenario's limits (loadtest/verdict.py): the table and the verdict are printed, the summary
JSON written (--summary-file), and the exit code is 1 when a limit was breached.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import grpc.experimental.gevent as grpc_gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

# grpcio must cooperate with gevent before any channel exists (Locust has patched the process).
grpc_gevent.init_gevent()

from loadtest.grpc_user import GrpcExplainUser, size_gevent_threadpool  # noqa: E402
from loadtest.http_user import HttpExplainUser, client_timeout_s  # noqa: E402
from loadtest.images import load_images  # noqa: E402
from loadtest.settings import add_options, settings_from_options  # noqa: E402
from loadtest.verdict import Row, judge, render_table, write_summary  # noqa: E402
from ptxplain.errors import PtxplainError  # noqa: E402

__all__ = ["GrpcExplainUser", "HttpExplainUser"]

log = logging.getLogger("ptxplain.loadtest")


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    add_options(parser)


@events.init.add_listener
def _configure(environment: Environment, **_: Any) -> None:
    """Resolve the settings once; workers (and a standalone run) also prepare the images."""
    if environment.parsed_options is None:
        raise RuntimeError("the ptxplain locustfile runs from Locust's command line only")
    try:
        settings = settings_from_options(environment.parsed_options)
        images = (
            []
            if isinstance(environment.runner, MasterRunner)
            else load_images(settings.scenario.images)
        )
    except PtxplainError as exc:
        log.error("error: %s", exc)
        sys.exit(2)
    for user in (GrpcExplainUser, HttpExplainUser):
        user.settings = settings
        user.images = images
    size_gevent_threadpool(environment.parsed_options.num_users or 1)
    HttpExplainUser.host = settings.http_base
    HttpExplainUser.network_timeout = client_timeout_s(settings)
    HttpExplainUser.connection_timeout = settings.scenario.list_deadline_s
    if images:
        log.info("%d image(s): %s", len(images), ", ".join(i.name for i in images))


def _rows(environment: Environment) -> list[Row]:
    rows = []
    for entry in environment.stats.entries.values():
        rows.append(
            Row(
                type=str(entry.method),
                name=entry.name,
                requests=entry.num_requests,
                failures=entry.num_failures,
                rps=entry.total_rps,
                p50_ms=entry.get_response_time_percentile(0.5),
                p95_ms=entry.get_response_time_percentile(0.95),
                p99_ms=entry.get_response_time_percentile(0.99),
                max_ms=entry.max_response_time or 0.0,
            )
        )
    return rows


@events.quitting.add_listener
def _judge(environment: Environment, **_: Any) -> None:
    """Judge the run against the scenario's limits; set the process's exit code."""
    if isinstance(environment.runner, WorkerRunner):
        return
    settings = GrpcExplainUser.settings
    rows = _rows(environment)
    verdict = judge(rows, settings.scenario.limits)
    print(render_table(rows))
    for breach in verdict.breaches:
        print(f"LIMIT BREACHED: {breach}")
    print(
        f"verdict: {'PASS' if verdict.passed else 'FAIL'} — {verdict.requests} answered, "
        f"{verdict.failures} failed, {verdict.shed} shed"
    )
    if settings.summary_file is not None:
        options = environment.parsed_options
        assert options is not None  # checked on init
        run = {
            "users": options.num_users,
            "spawn_rate": options.spawn_rate,
            "run_time": options.run_time,
            "http": settings.http_base,
            "grpc": settings.grpc_target,
            "user_classes": options.user_classes or ["GrpcExplainUser", "HttpExplainUser"],
            "scenario": settings.scenario.as_json(),
        }
        write_summary(settings.summary_file, rows, verdict, run)
    environment.process_exit_code = 0 if verdict.passed else 1
