"""Fixtures shared by every test area.

* torch runs on one thread (the machine has two cores, shared with other work);
* ``torchserve``: ONE real TorchServe per session serving a small random-init model per
  architecture family (input size 64, 1 worker, 1 torch thread, batches of up to 4 within
  50 ms), built into a temporary model store. Only tests that ask for it start it.
* workers (in-process handlers and TorchServe's alike) share decoded images in a folder of this
  session's own, not the machine's (``$PTXPLAIN_DECODE_CACHE_DIR``), and their engines take
  turns on that folder's gate (ptxplain/machine.py ``EngineGate``), removed at the end.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from handlers.archive import BuiltArchive, ServingOptions, WeightsSource, build_archive
from ptxplain.imaging.shared_decode import ENV_DIR
from ptxplain.machine import remove_gates
from services.torchserve import Ports, TorchServeConfig, TorchServeProcess, group_members

torch.set_num_threads(1)
os.environ[ENV_DIR] = tempfile.mkdtemp(prefix="ptxplain-test-decodes-")
atexit.register(shutil.rmtree, os.environ[ENV_DIR], ignore_errors=True)
atexit.register(remove_gates, os.environ[ENV_DIR])

LIVE_ARCHS = ("resnet18", "vgg16_bn", "vit_s16", "densenet121", "efficientnet_b0")
LIVE_INPUT_SIZE = 64
LIVE_SERVING = ServingOptions(batch_size=4, max_batch_delay_ms=50, workers=1, torch_threads=1)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until ``condition`` holds; fails naming ``what`` after ``timeout_s``. Tests wait on
    the state they need instead of a fixed pause, which races a slower machine."""
    started = time.perf_counter()
    while not condition():
        waited = time.perf_counter() - started
        assert waited < timeout_s, f"{what}: not so after {waited:.1f} s"
        time.sleep(0.01)
    return time.perf_counter() - started


@dataclasses.dataclass(frozen=True)
class LiveTorchServe:
    """A running TorchServe and how long it took to get there."""

    config: TorchServeConfig
    process: TorchServeProcess
    models: tuple[str, ...]
    archives: tuple[BuiltArchive, ...]
    archive_s: float
    startup_s: float


_TIMINGS: dict[str, str] = {}


def build_live_store(store: Path, archs: tuple[str, ...] = LIVE_ARCHS) -> list[BuiltArchive]:
    weights = WeightsSource(seed=0, input_size=LIVE_INPUT_SIZE)
    return [build_archive(a, store, weights=weights, serving=LIVE_SERVING) for a in archs]


def free_port_config(store: Path, run_dir: Path) -> TorchServeConfig:
    """A default config on free loopback ports (port 0 resolved now)."""
    ports = Ports(0, 0, 0, 0, 0)
    return TorchServeConfig(model_store=store, run_dir=run_dir, ports=ports).with_free_ports()


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveTorchServe]:
    root = tmp_path_factory.mktemp("torchserve")
    started = time.perf_counter()
    archives = build_live_store(root / "model_store")
    archive_s = time.perf_counter() - started
    config = free_port_config(root / "model_store", root / "run")
    process = TorchServeProcess(config).start(timeout_s=300)
    live = LiveTorchServe(
        config=config,
        process=process,
        models=tuple(a.name for a in archives),
        archives=tuple(archives),
        archive_s=archive_s,
        startup_s=process.startup_s or 0.0,
    )
    _TIMINGS["torchserve fixture"] = (
        f"archives {archive_s:.1f}s ("
        + ", ".join(f"{a.name} {a.seconds:.1f}s" for a in archives)
        + f"), start-to-ready {live.startup_s:.1f}s"
    )
    pgid = process.pid
    try:
        yield live
    finally:
        process.stop()
    assert pgid is not None and not group_members(pgid), "TorchServe left processes behind"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for name, text in _TIMINGS.items():
        terminalreporter.write_line(f"{name}: {text}")
