"""What this machine offers the process (torch-free, so every door can ask).

``cpu_slice`` asks the Linux scheduler for a longer time slice for this process's threads. Since
Linux 6.12 the fair scheduler (EEVDF) takes a per-task slice from ``sched_setattr``'s
``sched_runtime`` (0.1-100 ms; the default is about 3 ms). Model workers are CPU-bound: when more
of them are runnable than there are cores, the short default slice switches between models every
few milliseconds and each switch evicts the caches the previous model's weights were in. On this
project's 2-core machine that made six single-thread workers' engines 5-15 % slower per image
than each alone; with a 20 ms slice they ran as fast as alone (docs/engine.md). Python's ``os``
module exposes ``sched_setscheduler`` but not ``sched_setattr``, hence the system call by hand.

``keep_freed_memory`` tells glibc's allocator to keep freed memory for reuse. By default it maps
large blocks (a batch's activations) fresh from the kernel and hands them back when freed, and
trims the heap's free top, so every batch touches new pages: 10,000-15,000 page faults a second
in the densenet121, efficientnet_b0 and vgg16_bn workers at saturation, 7-12 % of their CPU.
With blocks up to 32 MiB taken from the heap and up to ``mb`` MiB of free heap kept, they took
none (docs/engine.md). There is no Python interface to ``mallopt``, hence ctypes.
"""

from __future__ import annotations

import ctypes
import os
import platform

from ptxplain.errors import ConfigError

__all__ = [
    "DEFAULT_KEEP_FREED_MB",
    "DEFAULT_SHARED_DECODE_MB",
    "DEFAULT_SLICE_MS",
    "WORKER_SETTINGS",
    "check_worker_settings",
    "cpu_cores",
    "cpu_slice",
    "keep_freed_memory",
]

DEFAULT_SLICE_MS = 20  # what model workers ask for unless configured
# The host memory (MiB) model workers share decoded images in by default
# (ptxplain/imaging/shared_decode.py; here so the CLI can show it without numpy).
DEFAULT_SHARED_DECODE_MB = 256
# Freed memory (MiB) a model worker keeps for its next batch instead of giving it back.
DEFAULT_KEEP_FREED_MB = 1024
# The worker settings above, each 0 = off: their upper bounds (None = none).
WORKER_SETTINGS = {"decode_cache_mb": None, "cpu_slice_ms": 100, "keep_freed_mb": None}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's cap on 64-bit: larger blocks are always mapped
# (sched_setattr, sched_getattr) system call numbers.
_SCHED_ATTR_CALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}


def check_worker_settings(where: str, values: dict[str, int | None]) -> None:
    """:class:`ConfigError` naming a worker setting below 0 or over its bound (None: not set);
    ``where`` opens the message ("handler setting", "archive option")."""
    for name, value in values.items():
        if value is None:
            continue
        if value < 0:
            raise ConfigError(f"{where} {name} must be at least 0 (0 = off), got {value}")
        high = WORKER_SETTINGS[name]
        if high is not None and value > high:
            raise ConfigError(f"{name} is at most {high} (Linux's cap), got {value}")


def cpu_cores() -> int:
    """The cores this process may run on (its affinity), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _SchedAttr(ctypes.Structure):
    """``struct sched_attr`` (include/uapi/linux/sched/types.h), version 1 (56 bytes)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


def _thread_ids() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]  # 0 = the calling thread


def cpu_slice(ms: float) -> float | None:
    """Ask for a ``ms`` time slice for every thread of this process (normal policy, nice kept).

    Returns the slice the kernel then reports for the calling thread, in ms, or None where the
    kernel does not keep a per-task slice (not Linux, Linux before 6.12, another architecture, or
    the call refused, e.g. by a seccomp profile). Never raises: a slice is a tuning, not a need.
    """
    calls = _SCHED_ATTR_CALLS.get(platform.machine())
    if calls is None or not hasattr(os, "sched_getaffinity"):
        return None
    set_call, get_call = calls
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        for tid in _thread_ids():
            attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr))
            if libc.syscall(get_call, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0) != 0:
                continue  # a thread that ended meanwhile
            if attr.sched_policy not in (os.SCHED_OTHER, os.SCHED_BATCH):
                continue  # real-time or idle threads keep what they have
            attr.size = ctypes.sizeof(_SchedAttr)
            attr.sched_flags = 0
            attr.sched_runtime = round(ms * 1e6)
            libc.syscall(set_call, tid, ctypes.byref(attr), 0)
        got = _SchedAttr(size=ctypes.sizeof(_SchedAttr))
        if libc.syscall(get_call, 0, ctypes.byref(got), ctypes.sizeof(got), 0) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return got.sched_runtime / 1e6 if got.sched_runtime else None


def keep_freed_memory(mb: int) -> bool:
    """Keep up to ``mb`` MiB of freed memory in this process for reuse (glibc's ``mallopt``:
    blocks up to 32 MiB from the heap, and the heap's free top trimmed only past ``mb``).

    Returns whether the allocator took both settings: False where the C library is not glibc
    or has no ``mallopt``, and for ``mb`` <= 0 (the allocator's own behaviour kept). Never raises.
    """
    if mb <= 0:
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    trim = min(mb * 1024 * 1024, 2**31 - 1)
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim)
    )
