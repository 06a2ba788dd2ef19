"""The shipped log4j2.xml on a real TorchServe: a handler's exception and a worker's stderr still
reach the console log (run/logs/torchserve.log) and model_log.log, requests the access log; the
console holds no second copy of ts_log.log or of the access log, and no per-job lines."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from handlers.archive import ServingOptions, WeightsSource, build_archive
from ptxplain.errors import PtxplainError
from services.torchserve import TorchServeProcess, rest_client
from tests.conftest import free_port_config
from tests.services.test_torchserve_live import png

pytestmark = pytest.mark.live

PROBE = "ptxplain-log-probe"
FAILING_ENTRY = f'''
import sys

from handlers.torchserve_handler import PtxplainHandler


class Handler(PtxplainHandler):
    def initialize(self, context):
        print("{PROBE}: a line on the worker's stderr", file=sys.stderr, flush=True)
        super().initialize(context)

    def handle(self, data, context):
        raise RuntimeError("{PROBE}: the handler failed")
'''


def _wait_for(path: Path, text: str, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.2)


def test_handler_errors_and_requests_are_logged_once(tmp_path: Path) -> None:
    entry = tmp_path / "failing_entry.py"
    entry.write_text(FAILING_ENTRY)
    build_archive(
        "resnet18",
        tmp_path / "store",
        name="failing",
        weights=WeightsSource(input_size=32),
        serving=ServingOptions(max_batch_delay_ms=5),
        entry=entry,
    )
    config = free_port_config(tmp_path / "store", tmp_path / "run")
    assert "-XX:+UseSerialGC" in config.vm_args() or not config.small_machine
    with TorchServeProcess(config).start(timeout_s=300) as server:
        with rest_client(server.config, timeout_s=60) as rest:
            for seed in range(3):
                with contextlib.suppress(PtxplainError):
                    rest.predict("failing", png(seed))
        logs = config.log_dir
        console = _wait_for(config.log_path, f"{PROBE}: the handler failed")
        model_log = _wait_for(logs / "model_log.log", f"{PROBE}: the handler failed")
        access = _wait_for(logs / "access_log.log", "/models/failing/invoke")
        ts_log = _wait_for(logs / "ts_log.log", "failing")
    for text in (console, model_log):
        assert f"{PROBE}: the handler failed" in text and "Traceback" in text
        assert f"{PROBE}: a line on the worker's stderr" in text
    assert "/models/failing/invoke" in access
    assert "ModelServer" in ts_log and "[DEBUG]" not in ts_log
    # No per-job frontend lines, no access log, no "Backend received" on the console.
    for noise in ("ACCESS_LOG", "BatchAggregator", "org.pytorch.serve.job", "Backend received"):
        assert noise not in console, noise
    assert "BatchAggregator" not in ts_log and "Backend received inference" in model_log
