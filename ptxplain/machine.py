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

:class:`EngineGate` lets at most ``slots`` engines of one host compute at once (by default one
per core). Six single-thread workers on two cores otherwise take turns on each core in the middle
of a batch, and each turn refills the caches with another model's weights; waiting for a free
core instead lets each batch run to its end on one. It is a System V semaphore: shared by every
process of the host (or container) that opens the same scope, with ``SEM_UNDO``, so the kernel
hands back the slots of a worker that dies holding them. Python's ``multiprocessing`` semaphores
only reach a process's own children and ``posix_ipc`` is not a dependency, hence ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import math
import os
import platform
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from ptxplain.errors import ConfigError

__all__ = [
    "DEFAULT_KEEP_FREED_MB",
    "DEFAULT_SHARED_DECODE_MB",
    "DEFAULT_SLICE_MS",
    "WORKER_SETTINGS",
    "EngineGate",
    "check_worker_settings",
    "cpu_cores",
    "cpu_slice",
    "keep_freed_memory",
    "parse_engines_at_once",
    "remove_gates",
]

log = logging.getLogger(__name__)

DEFAULT_SLICE_MS = 20  # what model workers ask for unless configured
# The host memory (MiB) model workers share decoded images in by default
# (ptxplain/imaging/shared_decode.py; here so the CLI can show it without numpy).
DEFAULT_SHARED_DECODE_MB = 256
# Freed memory (MiB) a model worker keeps for its next batch instead of giving it back.
DEFAULT_KEEP_FREED_MB = 1024
_GATE_SLOTS_MAX = 4096  # engines at once (EngineGate), at most
# The worker settings above and engines_at_once, each 0 = off: their upper bounds (None = none).
WORKER_SETTINGS = {
    "decode_cache_mb": None,
    "cpu_slice_ms": 100,
    "keep_freed_mb": None,
    "engines_at_once": _GATE_SLOTS_MAX,
}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's cap on 64-bit: larger blocks are always mapped
# (sched_setattr, sched_getattr) system call numbers.
_SCHED_ATTR_CALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}


def check_worker_settings(where: str, settings: object) -> None:
    """:class:`ConfigError` naming a worker setting of ``settings`` (an object with the
    :data:`WORKER_SETTINGS` as attributes) below 0 or over its bound (None: not set); ``where``
    opens the message ("handler setting", "archive option")."""
    for name in WORKER_SETTINGS:
        value = getattr(settings, name)
        if value is None:
            continue
        if value < 0:
            raise ConfigError(f"{where} {name} must be at least 0 (0 = off), got {value}")
        high = WORKER_SETTINGS[name]
        if high is not None and value > high:
            raise ConfigError(f"{where} {name} is at most {high}, got {value}")


def cpu_cores() -> int:
    """The cores this process may use: its affinity (else ``os.cpu_count()``), and no more than
    its cgroup's CPU quota rounded up (a container's CPU limit, e.g. a Kubernetes pod's)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


_CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = _CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in cores (cgroup v2 ``cpu.max``, else v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None when there is none or none can be read."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


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


# -- engines at once, host-wide (System V semaphore) ------------------------------------------

_IPC_CREAT, _IPC_EXCL, _IPC_RMID, _SEM_UNDO = 0o1000, 0o2000, 0, 0x1000
_GETNCNT, _GETVAL, _SETVAL = 14, 12, 16  # semctl commands (linux/sem.h)
_GATE_MODE = 0o600  # this user's processes only
_SYSV_SEMAPHORES = Path("/proc/sysvipc/sem")
_WARN_EVERY_S = 60.0


def parse_engines_at_once(value: object) -> int | None:
    """``auto`` (or None) -> None, the worker's cores; a count 0 (no limit) .. 4096 -> itself.
    :class:`ValueError` naming the value otherwise."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        count = int(str(value))
    except ValueError:
        raise ValueError(f"engines_at_once is 'auto' or a count, got {value!r}") from None
    _check_slots(count)
    return count


def _check_slots(count: int) -> None:
    if not 0 <= count <= _GATE_SLOTS_MAX:
        raise ValueError(f"engines_at_once is 0 (no limit) .. {_GATE_SLOTS_MAX}, got {count}")


class _SemBuf(ctypes.Structure):
    """``struct sembuf`` (sys/sem.h)."""

    _fields_ = [
        ("sem_num", ctypes.c_ushort),
        ("sem_op", ctypes.c_short),
        ("sem_flg", ctypes.c_short),
    ]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _gate_key(scope: str, slots: int) -> int:
    """The semaphore's System V key: this user, the scope and the number of slots (a gate with
    another number of slots is another gate); never 0 (IPC_PRIVATE)."""
    raw = f"ptxplain-engine-gate\0{os.getuid()}\0{scope}\0{slots}".encode()
    return zlib.crc32(raw) & 0x7FFFFFFF or 1


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.semget.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        libc.semctl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int)
        libc.semtimedop.argtypes = (
            ctypes.c_int,
            ctypes.POINTER(_SemBuf),
            ctypes.c_size_t,
            ctypes.POINTER(_TimeSpec),
        )
    except (OSError, AttributeError):
        return None
    return libc


class EngineGate:
    """At most ``slots`` engines computing at once among the processes that open ``scope``.

    ``hold(n)`` waits for ``n`` free slots (a worker's torch threads), at most ``wait_s``; past
    that, and wherever the semaphore cannot be had (no System V IPC, a key taken by another
    user), the engine runs without waiting and the gate says why in one warning. A gate never
    fails a request: it only orders work. ``slots`` 0 is no gate.
    """

    def __init__(self, scope: str, slots: int, *, wait_s: float = 30.0) -> None:
        try:
            _check_slots(slots)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.scope = scope
        self.slots = slots
        self.wait_s = wait_s
        self.why_open: str | None = None  # why engines run without waiting (None: they wait)
        self._warned_at = -math.inf
        self._libc = _libc() if slots else None
        self._id = self._open() if slots else -1

    @property
    def enabled(self) -> bool:
        return self._id >= 0

    def _open(self) -> int:
        if self._libc is None or not hasattr(os, "getuid"):
            self._give_up("this C library has no System V semaphores")
            return -1
        key = _gate_key(self.scope, self.slots)
        made = self._libc.semget(key, 1, _IPC_CREAT | _IPC_EXCL | _GATE_MODE)
        if made >= 0:
            # Until this runs the count is 0: a process that opens the gate meanwhile just waits.
            if self._libc.semctl(made, 0, _SETVAL, self.slots) != 0:
                self._give_up(f"cannot set the semaphore: {os.strerror(ctypes.get_errno())}")
                return -1
            return int(made)
        if ctypes.get_errno() != errno.EEXIST:
            self._give_up(f"cannot make a semaphore: {os.strerror(ctypes.get_errno())}")
            return -1
        found = self._libc.semget(key, 1, _GATE_MODE)
        if found < 0:
            self._give_up(f"cannot open semaphore key {key:#x}: {os.strerror(ctypes.get_errno())}")
            return -1
        return int(found)

    def _give_up(self, why: str) -> None:
        self.why_open = why
        self._id = -1
        log.warning("engines run without waiting for a core (%s)", why)

    def _change(self, delta: int, wait_s: float | None) -> bool:
        """Add ``delta`` to the count (negative: take slots, waiting up to ``wait_s``)."""
        assert self._libc is not None
        op = _SemBuf(0, delta, _SEM_UNDO)
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while True:
            timeout = None
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                timeout = _TimeSpec(int(left), int((left % 1) * 1e9))
            if self._libc.semtimedop(self._id, ctypes.byref(op), 1, timeout) == 0:
                return True
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            if err == errno.EAGAIN:
                if time.monotonic() - self._warned_at > _WARN_EVERY_S:
                    self._warned_at = time.monotonic()
                    log.warning(
                        "no core free for %g s (engines_at_once %d): batches run without "
                        "waiting meanwhile (told once a minute)",
                        self.wait_s,
                        self.slots,
                    )
                return False
            self._give_up(f"the semaphore went away: {os.strerror(err)}")
            return False

    @contextlib.contextmanager
    def hold(self, n: int = 1) -> Iterator[bool]:
        """Hold ``n`` slots (at most all of them) while the block runs; yields whether it waited
        its turn (False: no gate, or none free within ``wait_s``)."""
        n = min(max(1, n), self.slots)
        held = self.enabled and self._change(-n, self.wait_s)
        try:
            yield held
        finally:
            if held and self.enabled:
                self._change(n, None)

    def free(self) -> int | None:
        """Slots free now (None without a gate)."""
        return self._read(_GETVAL)

    def waiting(self) -> int | None:
        """Processes waiting now for slots (None without a gate)."""
        return self._read(_GETNCNT)

    def _read(self, command: int) -> int | None:
        if not self.enabled:
            return None
        assert self._libc is not None
        value = self._libc.semctl(self._id, 0, command, 0)
        return int(value) if value >= 0 else None


def remove_gates(scope: str) -> int:
    """Remove this user's gates of ``scope`` (any number of slots) from the host; how many.

    A gate outlives its processes (as the shared decode folder does); tests and tear-downs that
    made a scope of their own remove it with this."""
    libc = _libc()
    if libc is None:
        return 0
    keys = {_gate_key(scope, slots) for slots in range(1, _GATE_SLOTS_MAX + 1)}
    removed = 0
    try:
        lines = _SYSV_SEMAPHORES.read_text().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if len(fields) < 5 or int(fields[0]) not in keys or int(fields[4]) != os.getuid():
            continue
        if libc.semctl(int(fields[1]), 0, _IPC_RMID, 0) == 0:
            removed += 1
    return removed
