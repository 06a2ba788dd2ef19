"""`ptxplain torchserve start|status|stop` on a second, tiny TorchServe whose tokens expire
after 3 seconds: clients get through past expiry, and stopping leaves no process behind."""

from __future__ import annotations

import datetime as dt
import json
import random
import socket
import time
from pathlib import Path

import pytest
import requests

from handlers.archive import ServingOptions, WeightsSource, build_archive
from ptxplain.cli import main
from ptxplain.errors import ConfigError
from services.torchserve import (
    GrpcClient,
    Ports,
    RestClient,
    TokenSource,
    TorchServeConfig,
    TorchServeProcess,
    group_members,
    read_key_file,
)
from services.torchserve.auth import is_rest_rejection
from services.torchserve.process import check_ports_free, running_pid
from tests.services.test_torchserve_live import png

pytestmark = pytest.mark.live

EXPIRY_MIN = 0.15  # 9 seconds (TorchServe parses token_expiration_min as a double): long enough
# that on a loaded machine the key read below is still the one in the key file (at 3 s it once
# was not: probably a slow first predict met an expired key and a client had it rotated)


def free_port_base(host: str = "127.0.0.1") -> int:
    """A base N with N..N+4 free now."""
    for _ in range(50):
        base = random.randrange(20000, 60000)
        try:
            check_ports_free(TorchServeConfig(Path("."), Path("."), ports=Ports.from_base(base)))
        except ConfigError:
            continue
        return base
    raise RuntimeError("no five consecutive free ports found")


def processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def wait_past_expiry(key_file: Path) -> None:
    expires = read_key_file(key_file).inference_expires
    assert expires is not None
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.3)


def test_cli_lifecycle_with_expiring_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, run = tmp_path / "store", tmp_path / "run"
    build_archive(
        "efficientnet_b0",
        store,
        weights=WeightsSource(input_size=32),
        serving=ServingOptions(max_batch_delay_ms=5),
    )
    base = free_port_base()
    where = ["--model-store", str(store), "--run-dir", str(run), "--port-base", str(base)]
    expiring = ["--token-expiration-min", str(EXPIRY_MIN)]
    assert main(["torchserve", "start", *where, *expiring, "--timeout", "180"]) == 0
    started = json.loads(capsys.readouterr().out)
    config = TorchServeConfig(store, run, ports=Ports.from_base(base))
    assert started["models"] == ["efficientnet_b0"] and started["inference"] == config.inference_url
    pid = running_pid(config)
    assert pid == started["pid"]
    try:
        with pytest.raises(ConfigError, match=f"port {base} \\(inference\\)"):
            TorchServeProcess(
                TorchServeConfig(store, tmp_path / "other", ports=config.ports)
            ).start()

        rest = RestClient(config.inference_url, TokenSource(config.key_file, config.management_url))
        grpc_ = GrpcClient(
            config.grpc_inference_target, TokenSource(config.key_file, config.management_url)
        )
        with rest, grpc_:
            assert rest.predict("efficientnet_b0", png()).ok
            assert grpc_.predict("efficientnet_b0", png()).ok
            expired = rest.token.current() if rest.token else ""
            wait_past_expiry(config.key_file)
            refused = requests.get(
                f"{config.inference_url}/ping",
                headers={"Authorization": f"Bearer {expired}"},
                timeout=10,
            )
            assert is_rest_rejection(refused.status_code, refused.content)  # it has expired
            assert read_key_file(config.key_file).inference == expired  # and was not rotated
            assert rest.predict("efficientnet_b0", png()).ok  # the client asked for a new key
            assert rest.token is not None and rest.token.current() != expired
            assert grpc_.predict("efficientnet_b0", png()).ok  # gRPC picks it up from the file

        wait_past_expiry(config.key_file)  # the management key has expired too by now
        assert main(["torchserve", "status", *where]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["models"]["efficientnet_b0"]["workers"] == ["READY"]
    finally:
        assert main(["torchserve", "stop", *where]) == 0
    assert pid is not None and not group_members(pid)
    assert processes_mentioning(str(run)) == []  # no java, no python worker left
    assert not config.pid_file.exists() and not config.key_file.exists()
    assert main(["torchserve", "status", *where]) == 1
    with socket.create_server(("127.0.0.1", base)):  # its ports are free again
        pass
