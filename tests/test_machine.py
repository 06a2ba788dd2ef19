"""What the machine module reports and asks for, read back from the kernel's own accounts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from ptxplain.machine import cpu_cores


def _kernel_keeps_a_slice_per_task() -> bool:
    """Linux 6.12+ on x86_64 / aarch64 (EEVDF's custom slices)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return False
    major, minor = (int(p) for p in platform.release().split(".")[:2])
    return (major, minor) >= (6, 12)


def test_cpu_cores_is_the_affinity() -> None:
    assert cpu_cores() == len(os.sched_getaffinity(0))


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
