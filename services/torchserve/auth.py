"""TorchServe token authorization: the key file, bearer tokens, and refresh after a rejection.

TorchServe 0.12 writes ``key_file.json`` into its working directory (our run directory)::

    {"management": {"key": "...", "expiration time": "2025-01-01T10:00:00.123Z"},
     "inference":  {"key": "...", "expiration time": "..."},
     "API":        {"key": "..."}}

Clients send ``Authorization: Bearer <key>`` (REST header; gRPC metadata ``authorization``).
A wrong or expired key is answered with REST 400 ``InvalidKeyException`` (0.12 maps it to Bad
Request, not 401; both are recognised) or gRPC ``PERMISSION_DENIED``. On a rejection
:meth:`TokenSource.refresh` re-reads the key file (someone may have rotated the key); if the key
there is the one just rejected, it has expired, so it asks the management API for a new one
(``GET /token?type=inference`` with the never-expiring API key — TorchServe then rewrites the
key file) and reads that. The caller retries once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any, Literal

from ptxplain.errors import AuthError, BackendError
from services.torchserve.config import TorchServeConfig

__all__ = [
    "KeyKind",
    "TokenKeys",
    "TokenSource",
    "is_rest_rejection",
    "read_key_file",
    "token_source",
]

KeyKind = Literal["inference", "management"]
_REJECTED_TYPE = "InvalidKeyException"


@dataclasses.dataclass(frozen=True)
class TokenKeys:
    """The three keys of a key file, with the two expiry times TorchServe records."""

    inference: str
    management: str
    api: str
    inference_expires: dt.datetime | None = None
    management_expires: dt.datetime | None = None

    def key(self, kind: KeyKind) -> str:
        return self.inference if kind == "inference" else self.management


def _expiry(entry: dict[str, Any], path: Path) -> dt.datetime | None:
    text = entry.get("expiration time")
    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise AuthError(f"key file {path}: bad expiration time {text!r}") from exc


def _key(raw: dict[str, Any], section: str, path: Path) -> tuple[str, dict[str, Any]]:
    entry = raw.get(section)
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"]:
        raise AuthError(f"key file {path} has no {section!r} key")
    return entry["key"], entry


def read_key_file(path: Path) -> TokenKeys:
    """Parse TorchServe's key file; a missing or malformed file is an :class:`AuthError`."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise AuthError(f"key file {path} does not exist (is TorchServe running there?)") from exc
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read key file {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise AuthError(f"key file {path} is not a JSON object")
    inference, inference_entry = _key(raw, "inference", path)
    management, management_entry = _key(raw, "management", path)
    api, _ = _key(raw, "API", path)
    return TokenKeys(
        inference=inference,
        management=management,
        api=api,
        inference_expires=_expiry(inference_entry, path),
        management_expires=_expiry(management_entry, path),
    )


def is_rest_rejection(status: int, body: bytes) -> bool:
    """Whether a REST answer means "bad or expired token" (401, or 0.12's 400 InvalidKey)."""
    if status == 401:
        return True
    if status != 400 or not body.lstrip().startswith(b"{"):
        return False
    try:
        return json.loads(body).get("type") == _REJECTED_TYPE
    except ValueError:
        return False


class TokenSource:
    """The current key of one kind (inference or management) for one TorchServe; thread-safe.

    Share one instance between the clients of a process so a refresh happens once.
    """

    def __init__(
        self,
        key_file: Path,
        management_url: str,
        kind: KeyKind = "inference",
        timeout_s: float = 10.0,
    ) -> None:
        self.key_file = key_file
        self.management_url = management_url.rstrip("/")
        self.kind: KeyKind = kind
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._key: str | None = None

    def current(self) -> str:
        """The key to send now (read from the key file on first use)."""
        with self._lock:
            if self._key is None:
                self._key = read_key_file(self.key_file).key(self.kind)
            return self._key

    def bearer(self) -> str:
        return f"Bearer {self.current()}"

    def refresh(self, rejected: str) -> str:
        """A key other than ``rejected``: from the key file, or else a newly issued one."""
        with self._lock:
            if self._key is not None and self._key != rejected:
                return self._key  # another caller has refreshed already
            keys = read_key_file(self.key_file)
            if keys.key(self.kind) == rejected:
                self._request_new_key(keys.api)
                keys = read_key_file(self.key_file)
                if keys.key(self.kind) == rejected:
                    raise AuthError(
                        f"TorchServe did not issue a new {self.kind} key "
                        f"(key file {self.key_file} unchanged)"
                    )
            self._key = keys.key(self.kind)
            return self._key

    def rotate(self) -> str:
        """Ask TorchServe for a new key now (the old one stops working at once)."""
        with self._lock:
            self._request_new_key(read_key_file(self.key_file).api)
            self._key = read_key_file(self.key_file).key(self.kind)
            return self._key

    def _request_new_key(self, api_key: str) -> None:
        import requests

        url = f"{self.management_url}/token?type={self.kind}"
        try:
            answer = requests.get(
                url, headers={"Authorization": f"Bearer {api_key}"}, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            raise BackendError(f"cannot reach TorchServe's token API at {url}: {exc}") from exc
        if answer.status_code != 200:
            raise AuthError(
                f"TorchServe's token API refused a new {self.kind} key "
                f"({answer.status_code}: {answer.text.strip()[:200]})"
            )


def token_source(config: TorchServeConfig, kind: KeyKind = "inference") -> TokenSource | None:
    """A token source for ``config``'s server, or None when token authorization is off."""
    if not config.token_auth:
        return None
    return TokenSource(config.key_file, config.management_url, kind)
