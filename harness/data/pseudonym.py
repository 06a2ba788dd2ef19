"""Pseudonymous patient ids: a keyed hash (HMAC-SHA256) with a per-dataset secret key.

Reports, logs and exported files carry patients only as pseudonyms such as ``p-3f9a0c1d2e4b5a69``.
The key is 32 random bytes stored (hex, mode 0600) in :data:`KEY_FILENAME` beside the split
file, so pseudonyms are stable for one data folder and cannot be recomputed from a public
PatientID without the key. Deleting the key file changes every pseudonym (and invalidates the
split file, whose fingerprint covers them).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from ptxplain.errors import ConfigError

__all__ = ["KEY_FILENAME", "Pseudonymizer", "load_or_create_key"]

KEY_FILENAME = "ptxplain-pseudonym.key"
_KEY_BYTES = 32
_DIGEST_CHARS = 16


class Pseudonymizer:
    """Maps raw patient ids to pseudonyms with one key; never stores the raw ids."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ConfigError("pseudonym key is shorter than 16 bytes")
        self._key = key

    def __call__(self, patient_id: str) -> str:
        digest = hmac.new(self._key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"p-{digest[:_DIGEST_CHARS]}"

    def __repr__(self) -> str:
        return "Pseudonymizer(key=<hidden>)"


def _read_key(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable pseudonym key ({exc})") from exc


def _write_key(path: Path) -> bytes:
    key = secrets.token_bytes(_KEY_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key.hex() + "\n")
    except FileExistsError:
        return _read_key(path)  # another process created it first: use theirs
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot write the pseudonym key ({exc}); point --state-dir at a writable "
            "folder"
        ) from exc
    return key


def load_or_create_key(state_dir: Path) -> Pseudonymizer:
    """The dataset's pseudonymizer, creating its key in ``state_dir`` on first use."""
    path = state_dir / KEY_FILENAME
    key = _read_key(path) if path.exists() else _write_key(path)
    return Pseudonymizer(key)
