"""Content digests of decoded images, and the file of the digests a model was trained on.

:func:`pixel_digest` hashes what the decoder made of an image, not its file bytes: the
(H, W) float32 array in [0, 1] (before letterboxing) rounded to 16 bits
(``clip(round(x * 65535), 0, 65535)``, NaN as 0) together with its shape, through SHA-256
(the first 16 bytes). Training
(:mod:`harness.train.data`, which decodes with this package's decoder) and the TorchServe handler
hash the same array, so the same DICOM, PNG or JPEG gives the same digest on both sides; a
re-encoded copy of an image (another transfer syntax, a PNG of a DICOM) generally does not.

:data:`DIGESTS_FILENAME` (``train-digests.bin``) sits beside a checkpoint's weights and inside
its archive. Layout, little-endian::

    8 bytes   magic b"PTXDIG01"
    uint32    n_train, the number of distinct train-split digests
    uint32    n_val, the number of distinct validation-split digests
    n_train x 16 bytes, sorted   the train split's digests
    n_val x 16 bytes, sorted     the validation split's digests

Both sections count as "seen": the train split fitted the weights, the validation split chose the
epoch and the threshold. :class:`SeenDigests` holds them for membership tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ptxplain.errors import InvalidInputError, WeightsError

__all__ = [
    "DIGESTS_FILENAME",
    "DIGEST_SIZE",
    "SeenDigests",
    "check_digest_file",
    "file_sha256",
    "pixel_digest",
    "read_digests",
    "write_digests",
]

DIGESTS_FILENAME = "train-digests.bin"
DIGEST_SIZE = 16
_MAGIC = b"PTXDIG01"
_HEADER = struct.Struct("<8sII")
_DOMAIN = b"ptxplain pixels u16 v1\n"  # hashed first: these digests are of nothing else


def pixel_digest(pixels: np.ndarray) -> bytes:
    """16 bytes naming a decoded (H, W) image in [0, 1]: its shape and 16-bit rounded values."""
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise InvalidInputError(f"pixel_digest needs a non-empty (H, W) image, got {pixels.shape}")
    scaled = np.multiply(pixels, np.float32(65535.0), dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0.0, 65535.0, out=scaled)
    scaled[np.isnan(scaled)] = 0.0  # a NaN would make the cast warn (and land anywhere)
    quantized = scaled.astype("<u2")
    digest = hashlib.sha256(_DOMAIN)  # OpenSSL's SHA-256: faster here than hashlib's BLAKE2b
    digest.update(struct.pack("<II", *quantized.shape))
    digest.update(np.ascontiguousarray(quantized).data)
    return digest.digest()[:DIGEST_SIZE]


@dataclasses.dataclass(frozen=True)
class SeenDigests:
    """The digests of a model's training and validation images."""

    train: frozenset[bytes] = frozenset()
    val: frozenset[bytes] = frozenset()

    def __contains__(self, digest: object) -> bool:
        return digest in self.train or digest in self.val

    def __len__(self) -> int:
        return len(self.train | self.val)


def _section(digests: Iterable[bytes]) -> bytes:
    unique = sorted(set(digests))
    if any(len(d) != DIGEST_SIZE for d in unique):
        raise InvalidInputError(f"digests must be {DIGEST_SIZE} bytes each")
    return b"".join(unique)


def write_digests(path: Path, train: Iterable[bytes], val: Iterable[bytes]) -> Path:
    """Write the digest file atomically (a temporary name, then a rename)."""
    train_bytes, val_bytes = _section(train), _section(val)
    header = _HEADER.pack(_MAGIC, len(train_bytes) // DIGEST_SIZE, len(val_bytes) // DIGEST_SIZE)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(header + train_bytes + val_bytes)
    os.replace(partial, path)
    return path


def _split(body: bytes) -> frozenset[bytes]:
    return frozenset(body[i : i + DIGEST_SIZE] for i in range(0, len(body), DIGEST_SIZE))


def read_digests(path: Path) -> SeenDigests:
    """The digests in ``path``; :class:`WeightsError` when it is unreadable or malformed."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read training digests {path}: {exc}") from exc
    if len(data) < _HEADER.size or data[:8] != _MAGIC:
        raise WeightsError(f"{path}: not a ptxplain digest file (no {_MAGIC!r} header)")
    _, n_train, n_val = _HEADER.unpack_from(data)
    end = _HEADER.size + (n_train + n_val) * DIGEST_SIZE
    if len(data) != end:
        raise WeightsError(
            f"{path}: {len(data)} bytes, but its header announces {n_train} + {n_val} digests "
            f"({end} bytes)"
        )
    middle = _HEADER.size + n_train * DIGEST_SIZE
    return SeenDigests(_split(data[_HEADER.size : middle]), _split(data[middle:end]))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex (recorded in the model metadata for the digest file)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc}") from exc


def check_digest_file(path: Path, sha256: str, *, model: str = "") -> None:
    """:class:`WeightsError` unless ``path`` is the digest file whose SHA-256 the model metadata
    records (nothing to check when it records none)."""
    if sha256 and file_sha256(path) != sha256:
        raise WeightsError(
            f"{path} is not the digest file its model metadata records (SHA-256 differs)",
            model=model,
        )
