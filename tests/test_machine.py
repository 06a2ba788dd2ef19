"""What the machine module reports and asks for, read back from the kernel's own accounts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import pytest

from ptxplain import machine
from ptxplain.errors import ConfigError
from ptxplain.machine import (
    EngineGate,
    cgroup_cpu_quota,
    cpu_cores,
    parse_engines_at_once,
    remove_gates,
)
from tests.conftest import wait_until


def _kernel_keeps_a_slice_per_task() -> bool:
    """Linux 6.12+ on x86_64 / aarch64 (EEVDF's custom slices)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return False
    major, minor = (int(p) for p in platform.release().split(".")[:2])
    return (major, minor) >= (6, 12)


def test_cpu_cores_is_the_affinity_within_the_cgroup_quota(monkeypatch) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota()
    assert cpu_cores() == (min(affinity, -(-quota // 1)) if quota else affinity)
    monkeypatch.setattr(machine, "cgroup_cpu_quota", lambda: 0.5)
    assert cpu_cores() == 1  # a pod limited to half a core still has one core to run on
    monkeypatch.setattr(machine, "cgroup_cpu_quota", lambda: 1000.0)
    assert cpu_cores() == affinity
    monkeypatch.setattr(machine, "cgroup_cpu_quota", lambda: None)
    assert cpu_cores() == affinity


def test_cgroup_quota_is_read_from_v2_then_v1(tmp_path) -> None:
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) is None  # v1: no limit
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    assert cgroup_cpu_quota(tmp_path) == 2.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None  # v2 says no limit and is read first
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5


SCRIPT = """
import json, os, threading, time
from ptxplain.machine import cpu_slice
def slices():
    out = []
    for tid in sorted(os.listdir("/proc/self/task")):
        for line in open(f"/proc/self/task/{tid}/sched"):
            if line.startswith("se.slice"):
                out.append(int(line.split(":")[1]))
    return out
worker = threading.Thread(target=time.sleep, args=(2,))
worker.start()
before = slices()
got = cpu_slice(17)
print(json.dumps([before, got, slices()]))
"""


def test_cpu_slice_reaches_every_thread_where_the_kernel_keeps_one() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    before, got, after = json.loads(done.stdout)
    if not _kernel_keeps_a_slice_per_task():
        assert got is None
        return
    if not before:
        pytest.skip("this kernel's /proc/<pid>/sched shows no se.slice to read back")
    assert got == 17.0
    assert len(after) == 2 and after == [17_000_000, 17_000_000]
    assert before != after  # the default slice is not 17 ms


CHURN = """
import json, resource, sys
import numpy as np
from ptxplain.machine import keep_freed_memory
took = keep_freed_memory(int(sys.argv[1]))
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def batch():  # activations of a batch: blocks of 3-19 MiB, allocated and freed out of order
    blocks = [np.ones(mib << 18, dtype=np.float32) for mib in (3, 7, 11, 19)]
    extra = np.ones(5 << 18, dtype=np.float32)
    del blocks
    last = np.ones(2 << 18, dtype=np.float32)
    del extra, last
for _ in range(3):
    batch()
before = faults()
for _ in range(30):
    batch()
print(json.dumps([took, faults() - before]))
"""


def test_kept_freed_memory_is_reused_without_page_faults() -> None:
    def churn(mb: int) -> tuple[bool, int]:
        done = subprocess.run(
            [sys.executable, "-c", CHURN, str(mb)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        took, faults = json.loads(done.stdout)
        return took, faults

    if platform.libc_ver()[0] != "glibc":
        assert churn(1024)[0] is False  # nothing to tell another allocator
        return
    default_took, default_faults = churn(0)
    kept_took, kept_faults = churn(1024)
    assert (default_took, kept_took) == (False, True)
    # Each batch touches ~47 MiB; glibc's own way re-faults thousands of its pages (measured
    # ~2,300 a batch here), kept memory next to none.
    assert default_faults > 30 * 1000, default_faults
    assert kept_faults < default_faults / 20, (kept_faults, default_faults)


# -- engines at once --------------------------------------------------------------------------


@pytest.fixture
def scope(tmp_path):
    """A gate scope of this test's own; its semaphores removed afterwards."""
    name = str(tmp_path / "gate")
    yield name
    remove_gates(name)
    assert remove_gates(name) == 0


HOLDER = """
import json, sys, time
from ptxplain.machine import EngineGate
scope, slots, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gate = EngineGate(scope, slots)
print("ready", flush=True)
sys.stdin.readline()  # all start together
spans = []
for _ in range(rounds):
    with gate.hold() as waited:
        start = time.monotonic()
        time.sleep(0.08)
        spans.append((start, time.monotonic(), waited))
print(json.dumps(spans), flush=True)
"""


def _most_at_once(scope: str, slots: int, processes: int = 4, rounds: int = 3) -> int:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, scope, str(slots), str(rounds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    spans = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        spans += json.loads(out)
    assert all(waited == bool(slots) for _, _, waited in spans)
    events = sorted([(start, 1) for start, _, _ in spans] + [(end, -1) for _, end, _ in spans])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


@pytest.mark.parametrize("slots", [1, 2])
def test_at_most_slots_engines_run_at_once_across_processes(scope, slots) -> None:
    assert _most_at_once(scope, slots) == slots


def test_without_a_gate_the_same_processes_overlap(scope) -> None:
    """The check above can fail: with no gate, four processes hold at once."""
    assert _most_at_once(scope, 0) > 2


KILLED = """
import sys, time
from ptxplain.machine import EngineGate
gate = EngineGate(sys.argv[1], 1)
with gate.hold():
    print("holding", flush=True)
    time.sleep(60)
"""


def test_a_process_killed_holding_a_slot_gives_it_back(scope) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, scope], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "holding"
    gate = EngineGate(scope, 1, wait_s=10)
    assert gate.free() == 0
    child.kill()
    child.wait(timeout=10)
    started = time.monotonic()
    with gate.hold() as waited:
        assert waited and gate.free() == 0
    assert time.monotonic() - started < 5
    assert gate.free() == 1


def test_the_gate_counts_the_processes_waiting_for_it(scope) -> None:
    holder = EngineGate(scope, 1)
    assert holder.waiting() == 0 and EngineGate(scope, 0).waiting() is None
    with holder.hold():
        children = [
            subprocess.Popen([sys.executable, "-c", KILLED, scope], stdout=subprocess.PIPE)
            for _ in range(2)
        ]
        try:
            wait_until(lambda: holder.waiting() == 2, 30, "two processes waiting")
        finally:
            for child in children:
                child.kill()
                child.wait(timeout=10)
    assert holder.waiting() == 0 and holder.free() == 1


def test_no_slot_free_in_time_runs_without_waiting_and_says_so(scope, caplog) -> None:
    holder = EngineGate(scope, 1)
    late = EngineGate(scope, 1, wait_s=0.3)
    with holder.hold():
        started = time.monotonic()
        with caplog.at_level("WARNING", logger="ptxplain.machine"), late.hold() as waited:
            assert not waited
        assert 0.25 < time.monotonic() - started < 5
    assert "no core free for 0.3 s (engines_at_once 1)" in caplog.text
    assert holder.free() == 1  # the one that did not wait gave nothing back


def test_a_gate_removed_under_its_workers_lets_them_run(scope, caplog) -> None:
    gate = EngineGate(scope, 2)
    assert gate.enabled and remove_gates(scope) == 1
    with caplog.at_level("WARNING", logger="ptxplain.machine"), gate.hold() as waited:
        assert not waited
    assert not gate.enabled and "the semaphore went away" in (gate.why_open or "")


def test_gates_of_other_slot_counts_and_scopes_are_others(scope) -> None:
    one, two, elsewhere = EngineGate(scope, 1), EngineGate(scope, 2), EngineGate(scope + "x", 1)
    try:
        with one.hold():
            assert (one.free(), two.free(), elsewhere.free()) == (0, 2, 1)
        with two.hold(5):  # more than there are: all of them
            assert two.free() == 0
    finally:
        remove_gates(scope + "x")


def test_zero_slots_is_no_gate(scope) -> None:
    gate = EngineGate(scope, 0)
    with gate.hold() as waited:
        assert not waited and not gate.enabled and gate.free() is None


@pytest.mark.parametrize(
    ("text", "value"), [("auto", None), (" AUTO ", None), (None, None), ("0", 0), (3, 3)]
)
def test_engines_at_once_parses(text, value) -> None:
    assert parse_engines_at_once(text) == value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("many", "'auto' or a count, got 'many'"),
        ("-1", "0 .no limit. .. 4096, got -1"),
        ("5000", "got 5000"),
    ],
)
def test_engines_at_once_out_of_range_is_named(text, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_engines_at_once(text)
    with pytest.raises(ConfigError, match="engines_at_once"):
        EngineGate("x", 5000)
