"""`ptxplain loadtest`: its Locust command line, and its errors (exit 2, naming the problem)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ptxplain.cli import main
from ptxplain.cli.loadtest import add_arguments, locust_command


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_locust_command_is_headless_bounded_and_reported(tmp_path: Path) -> None:
    args = _args(
        "--users",
        "20",
        "--duration",
        "60s",
        "--protocol",
        "grpc",
        "--max-failure-ratio",
        "0",
        "--token-file",
        "tok",
    )
    command = locust_command(args, tmp_path / "run")
    joined = " ".join(command)
    assert command[1:5] == ["-m", "locust", "-f", command[4]] and command[4].endswith(
        "loadtest/locustfile.py"
    )
    for part in (
        "--headless",
        "--users 20",
        "--spawn-rate 20",
        "--run-time 60s",
        f"--csv {tmp_path / 'run'}",
        f"--html {tmp_path / 'run'}.html",
        f"--summary-file {tmp_path / 'run'}-summary.json",
        "--max-failure-ratio 0.0",
        "--grpc-target 127.0.0.1:50051",
        "--host http://127.0.0.1:8000",
    ):
        assert part in joined, part
    assert f"--token-file {Path('tok').absolute()}" in joined
    assert command[-1] == "GrpcExplainUser"
    assert "GrpcExplainUser" not in locust_command(_args(), tmp_path / "run")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "0"], "--users must be >= 1"),
        (["--spawn-rate", "0"], "--spawn-rate must be positive"),
        (["--scenario", "/nonexistent/scenario.yaml"], "/nonexistent/scenario.yaml"),
    ],
)
def test_bad_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["loadtest", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_scenario_stops_locust_with_exit_2(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("name: bad\ntaskz: {}\n")
    code = main(
        [
            "loadtest",
            "--scenario",
            str(scenario),
            "--users",
            "1",
            "--duration",
            "2s",
            "--out",
            str(tmp_path / "reports"),
        ]
    )
    assert code == 2
    assert not list((tmp_path / "reports").glob("*-summary.json"))
