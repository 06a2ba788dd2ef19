"""Decode once per request, not once per model: decoded images shared between model workers.

The gateway sends one request's image to every model, and each model's TorchServe worker is its
own process, so without this each one decodes the same bytes again (five decodes of one DICOM for
five models; a 4-megapixel JPEG 2000 radiograph costs about a second each). Decoding does not
depend on the model (only the letterbox and normalization that follow it do), so
:class:`SharedDecoder` keeps what the first worker decoded in a folder every worker on the host
reads, and the others read it instead of decoding again.

* **Key.** SHA-256 over a domain string, ptxplain's version, the :class:`DecodeLimits` and the
  image bytes. Workers with other limits, or another ptxplain, never share an entry, so what a
  model accepts or refuses is exactly what :func:`decode_image` would decide.
* **Once.** A worker takes one of 64 lock files (``flock``, chosen by the key) before it decodes;
  a worker that wants the same image waits on that lock and then reads the entry instead of
  decoding (waiting costs no CPU). Workers hold at most one lock at a time, so none deadlock.
* **Entries.** One file per image, written to a temporary name and renamed into place, so a
  reader sees a whole entry or none: 8 bytes ``PTXDEC01``, a little-endian uint32 header length,
  a JSON header (the :class:`DecodedImage` fields and the pixel shape), then the float32 pixels.
  A file that does not parse is removed and the image decoded again.
* **Bounded.** When the folder holds more than ``max_bytes`` the oldest entries are removed
  (down to three quarters), with temporary files a killed worker left. The cap is also at most a quarter of the folder's free space when
  the decoder opens. An entry removed before every model read it only costs a decode again.
* **Failures.** Only successful decodes are kept: a bad image fails in each model with the same
  error as before. A folder that cannot be used (not writable, owned by another user, open to
  others) turns sharing off with one warning; an error while sharing falls back to decoding.

Folder: ``$PTXPLAIN_DECODE_CACHE_DIR``, else ``/dev/shm/ptxplain-decodes-<uid>`` (memory), else
the same name in the temporary folder. See docs/decoding.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ptxplain import __version__
from ptxplain.imaging.decode import decode_image
from ptxplain.imaging.types import DecodedImage, DecodeLimits

__all__ = ["ENV_DIR", "SharedDecoder", "default_dir"]

log = logging.getLogger(__name__)

ENV_DIR = "PTXPLAIN_DECODE_CACHE_DIR"
_MAGIC = b"PTXDEC01"
_LENGTH = struct.Struct("<I")
_DOMAIN = b"ptxplain shared decode v1\n"
_STRIPES = 64
_SUFFIX = ".dec"


def default_dir() -> Path:
    """Where workers share decodes unless ``$PTXPLAIN_DECODE_CACHE_DIR`` says otherwise."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    name = f"ptxplain-decodes-{os.getuid()}"
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm / name
    return Path(tempfile.gettempdir()) / name


class SharedDecoder:
    """:func:`decode_image` within ``limits``, shared through ``root`` with other processes."""

    def __init__(self, root: Path, limits: DecodeLimits, max_bytes: int) -> None:
        self.root = root
        self.limits = limits
        self.max_bytes = max_bytes
        self.enabled = max_bytes > 0 and self._usable()
        self._locks: dict[int, int] = {}
        self._written = 0
        self.hits = 0
        self.decodes = 0
        if self.enabled:
            free = _free_bytes(root)
            self.max_bytes = min(max_bytes, free // 4) if free else max_bytes

    # -- the one door ---------------------------------------------------------------------------

    def decode(self, data: bytes) -> tuple[DecodedImage, bool]:
        """The decoded image, and whether it was read from the folder (another worker, or this
        one earlier, had decoded it)."""
        if not self.enabled or not data or len(data) > self.limits.max_bytes:
            return self._decode(data), False  # off, or an error decode_image names
        key = self._key(data)
        path = self.root / f"{key}{_SUFFIX}"
        try:
            found = self._read(path)
            if found is not None:
                self.hits += 1
                return found, True
            with self._lock(int(key[:8], 16) % _STRIPES):
                found = self._read(path)
                if found is not None:
                    self.hits += 1
                    return found, True
                decoded = self._decode(data)
                try:
                    self._write(path, decoded)
                except OSError as exc:  # full, say: this worker still has its decode
                    log.warning("could not keep a shared decode (%s)", exc)
                    return decoded, False
        except OSError as exc:
            log.warning("shared decoding failed (%s); decoding this image here", exc)
            return self._decode(data), False
        self._sweep_if_due()
        return decoded, False

    # -- internals ------------------------------------------------------------------------------

    def _decode(self, data: bytes) -> DecodedImage:
        self.decodes += 1
        return decode_image(data, limits=self.limits)

    def _key(self, data: bytes) -> str:
        h = hashlib.sha256(_DOMAIN)
        h.update(f"{__version__} {self.limits.max_bytes} {self.limits.max_pixels}\n".encode())
        h.update(data)
        return h.hexdigest()[:40]

    def _usable(self) -> bool:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.root / "locks").mkdir(mode=0o700, exist_ok=True)
            info = self.root.stat()
        except OSError as exc:
            log.warning("decodes not shared: cannot use %s (%s)", self.root, exc)
            return False
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            log.warning(
                "decodes not shared: %s must belong to this user and be closed to others "
                "(owner uid %d, mode %o)",
                self.root,
                info.st_uid,
                info.st_mode & 0o777,
            )
            return False
        return True

    @contextlib.contextmanager
    def _lock(self, stripe: int) -> Iterator[None]:
        fd = self._locks.get(stripe)
        if fd is None:
            fd = os.open(self.root / "locks" / f"{stripe:02d}", os.O_RDWR | os.O_CREAT, 0o600)
            self._locks[stripe] = fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _read(self, path: Path) -> DecodedImage | None:
        try:
            with path.open("rb") as f:
                blob = bytearray(os.fstat(f.fileno()).st_size)
                got = f.readinto(blob)
        except FileNotFoundError:
            return None
        try:
            if got != len(blob) or blob[:8] != _MAGIC:
                raise ValueError("not an entry")
            (length,) = _LENGTH.unpack_from(blob, 8)
            start = 8 + _LENGTH.size
            header = json.loads(blob[start : start + length])
            height, width = header.pop("shape")
            offset = start + length
            if len(blob) - offset != 4 * height * width:
                raise ValueError("truncated pixels")
            pixels = np.frombuffer(blob, dtype="<f4", offset=offset).reshape(height, width)
            if header.get("window") is not None:
                header["window"] = tuple(header["window"])
            return DecodedImage(pixels=pixels, **header)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("removing unreadable shared decode %s (%s)", path.name, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def _write(self, path: Path, decoded: DecodedImage) -> None:
        fields = {
            f.name: getattr(decoded, f.name)
            for f in dataclasses.fields(decoded)
            if f.name != "pixels"
        }
        pixels = np.ascontiguousarray(decoded.pixels, dtype="<f4")
        header = json.dumps({**fields, "shape": list(pixels.shape)}).encode()
        head = _MAGIC + _LENGTH.pack(len(header)) + header
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(head)
                f.write(pixels.tobytes())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._written += len(head) + pixels.nbytes  # not stat(): a sweep may have taken it

    def _sweep_if_due(self) -> None:
        """Remove the oldest entries once this worker has written an eighth of the cap."""
        if self._written < self.max_bytes // 8:
            return
        self._written = 0
        try:
            fd = os.open(self.root / "locks" / "sweep", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return  # another worker is sweeping
        try:
            self._sweep()
        finally:
            os.close(fd)

    def _sweep(self) -> None:
        entries = []
        stale = time.time_ns() - 60 * 10**9  # a temporary file a killed worker left
        with os.scandir(self.root) as it:
            for entry in it:
                with contextlib.suppress(OSError):
                    info = entry.stat()
                    if entry.name.endswith(_SUFFIX):
                        entries.append((info.st_mtime_ns, info.st_size, entry.path))
                    elif entry.name.startswith(".tmp-") and info.st_mtime_ns < stale:
                        os.unlink(entry.path)
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return
        for _, size, name in sorted(entries):
            with contextlib.suppress(OSError):
                os.unlink(name)
            total -= size
            if total <= self.max_bytes * 3 // 4:
                break


def _free_bytes(root: Path) -> int:
    try:
        stat = os.statvfs(root)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize
