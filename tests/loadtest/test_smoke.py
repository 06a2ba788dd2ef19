"""Short real Locust runs (`ptxplain loadtest`) against a real stack: the session's TorchServe
(tests/conftest.py: five random-init models at 64 px, token auth on) behind a gateway started
with the gateway tests' loop-thread fixture, with a client token.

* smoke: ~10 s, both protocols, every task: no failure, reports written;
* shedding: an in-flight bound of 1, so every fan-out is partly shed: the shed answers are
  counted apart, promptly, and the run still passes (no failure).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.scenario import DEFAULT_SCENARIO
from ptxplain.cli import main
from services.gateway import BackendConfig, GatewayConfig, RunningGateway
from tests.conftest import LiveTorchServe
from tests.gateway.conftest import LoopThread

pytestmark = pytest.mark.live
TOKEN = "smoke-test-token"


def _gateway(live: LiveTorchServe, loop: LoopThread, max_in_flight: int) -> RunningGateway:
    ts = live.config
    backend = BackendConfig(
        name="local",
        grpc=ts.grpc_inference_target,
        management=ts.management_url,
        models=live.models,
        key_file=ts.key_file,
        max_in_flight=max_in_flight,
    )
    config = GatewayConfig(
        backends=(backend,), grpc_port=0, http_port=0, client_token=TOKEN, json_logs=False
    )
    return loop.start_gateway(config)


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    """The gateway tests' loop thread (tests/gateway/conftest.py), for this module."""
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture
def gateway_factory(torchserve: LiveTorchServe, loop_thread: LoopThread) -> Iterator[Any]:
    started: list[RunningGateway] = []

    def start(max_in_flight: int) -> RunningGateway:
        started.append(_gateway(torchserve, loop_thread, max_in_flight))
        return started[-1]

    yield start
    for running in started:
        loop_thread.run(running.stop(grace_s=1.0))


def _scenario(tmp_path: Path, **changes: Any) -> Path:
    raw = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    raw["images"].update(size=128, count=4)
    raw["wait_s"] = [0.1, 0.3]
    raw.update(changes)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _loadtest(running: RunningGateway, tmp_path: Path, scenario: Path, *args: str) -> int:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    return main(
        [
            "loadtest",
            "--gateway-http",
            f"http://127.0.0.1:{running.http_port}",
            "--gateway",
            f"127.0.0.1:{running.grpc_port}",
            "--token-file",
            str(token),
            "--scenario",
            str(scenario),
            "--out",
            str(tmp_path / "reports"),
            "--name",
            "run",
            *args,
        ]
    )


def _summary(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "reports" / "run-summary.json").read_text()))


def test_smoke_run_over_both_protocols(gateway_factory: Any, tmp_path: Path) -> None:
    running = gateway_factory(64)
    code = _loadtest(running, tmp_path, _scenario(tmp_path), "--users", "4", "--duration", "10s")
    summary = _summary(tmp_path)
    assert code == 0, summary["verdict"]
    rows = {(r["type"], r["name"]): r for r in summary["rows"]}
    for protocol in ("grpc", "http"):
        for task in ("explain all", "explain one", "list models"):
            assert rows[(protocol, task)]["requests"] > 0, (protocol, task, sorted(rows))
    assert summary["verdict"]["failures"] == 0 and summary["verdict"]["shed"] == 0
    with (tmp_path / "reports" / "run_stats.csv").open() as handle:
        names = {(row["Type"], row["Name"]) for row in csv.DictReader(handle)}
    assert ("grpc", "explain all") in names and ("http", "explain one") in names
    assert (tmp_path / "reports" / "run.html").stat().st_size > 1000


def test_load_past_the_bound_is_shed_not_failed(gateway_factory: Any, tmp_path: Path) -> None:
    running = gateway_factory(1)
    scenario = _scenario(tmp_path, tasks={"explain all": 1})
    code = _loadtest(running, tmp_path, scenario, "--users", "3", "--duration", "6s")
    summary = _summary(tmp_path)
    shed = [r for r in summary["rows"] if r["name"].endswith(("[shed]", "[partly shed]"))]
    assert shed and sum(r["requests"] for r in shed) > 0, summary["rows"]
    assert all(r["failures"] == 0 for r in summary["rows"]), summary["rows"]
    assert code == 0, summary["verdict"]


def test_refused_calls_are_failures_and_fail_the_run(gateway_factory: Any, tmp_path: Path) -> None:
    running = gateway_factory(64)
    scenario = _scenario(tmp_path, tasks={"list models": 1})
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    code = _loadtest(running, tmp_path, scenario, "--users", "2", "--duration", "3s")
    assert code == 0
    code = main(
        [
            "loadtest",
            "--gateway-http",
            f"http://127.0.0.1:{running.http_port}",
            "--gateway",
            f"127.0.0.1:{running.grpc_port}",
            "--token-file",
            str(wrong),
            "--scenario",
            str(scenario),
            "--out",
            str(tmp_path / "reports"),
            "--name",
            "run",
            "--users",
            "2",
            "--duration",
            "3s",
        ]
    )
    verdict = _summary(tmp_path)["verdict"]
    assert code == 1 and verdict["failures"] == verdict["requests"] > 0
    assert any("failure ratio" in b for b in verdict["breaches"])
