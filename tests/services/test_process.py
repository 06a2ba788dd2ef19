"""How TorchServe is launched (no server started here; see the live tests for that)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ptxplain.errors import BackendError, ConfigError
from services.torchserve import Ports, TorchServeConfig, group_members
from services.torchserve.process import (
    _child_env,
    check_ports_free,
    launch_command,
    log_tail,
    wait_until_ready,
)


@pytest.fixture
def config(tmp_path: Path) -> TorchServeConfig:
    return TorchServeConfig(
        tmp_path / "store", tmp_path / "run", ports=Ports(0, 0, 0, 0, 0)
    ).with_free_ports()


def test_launch_is_the_java_frontend_in_the_foreground_without_a_global_pid_file(
    config: TorchServeConfig,
) -> None:
    command = launch_command(config)
    assert Path(command[0]).name == "java"
    assert f"-Djava.io.tmpdir={config.tmp_dir}" in command
    assert command[command.index("-cp") + 1].endswith("ts/frontend/*")
    assert "org.pytorch.serve.ModelServer" in command
    assert command[command.index("--python") + 1] == sys.executable
    assert command[command.index("-f") + 1] == str(config.properties_path)
    assert "-ncs" in command


def test_launch_carries_the_configs_jvm_options_before_the_class_path(tmp_path: Path) -> None:
    config = TorchServeConfig(tmp_path / "store", tmp_path / "run", cores=2, jvm_heap_mb=1024)
    command = launch_command(config)
    jvm = command[: command.index("-cp")]
    assert jvm[-4:] == [
        "-Xmx1024m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        f"-Dlog4j.configurationFile={config.log_config}",
    ]
    assert config.log_config.is_file()
    missing = TorchServeConfig(tmp_path / "s", tmp_path / "r", log_config=tmp_path / "none.xml")
    with pytest.raises(ConfigError, match="log config"):
        launch_command(missing)


def test_workers_get_this_python_and_this_repository(config: TorchServeConfig) -> None:
    env = _child_env(config)
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    repo = str(Path(__file__).resolve().parents[2])
    assert env["PYTHONPATH"].split(os.pathsep)[0] == repo
    assert env["LOG_LOCATION"] == str(config.log_dir) and "TS_CONFIG_FILE" not in env


def test_a_taken_port_is_a_config_error_naming_it(config: TorchServeConfig) -> None:
    taken = f"port {config.ports.metrics} \\(metrics\\)"
    with (
        socket.create_server((config.host, config.ports.metrics)),
        pytest.raises(ConfigError, match=taken),
    ):
        check_ports_free(config)
    check_ports_free(config)


def test_a_server_that_dies_while_starting_reports_its_log(config: TorchServeConfig) -> None:
    config.log_dir.mkdir(parents=True)
    config.log_path.write_text("line 1\nError: could not bind\n")
    with pytest.raises(BackendError, match=r"(?s)exited with code 3.*could not bind"):
        wait_until_ready(config, timeout_s=5, exit_code=lambda: 3)
    assert log_tail(config, lines=1) == "Error: could not bind"


def test_group_members_sees_live_processes_only() -> None:
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert group_members(child.pid) == [child.pid]
    finally:
        child.kill()
        child.wait()
    assert group_members(child.pid) == []
