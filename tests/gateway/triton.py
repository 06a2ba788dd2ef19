"""The real tritonclient, run in its own process (tests/gateway/triton_script.py says why)."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TritonAnswer", "triton_calls"]

_SCRIPT = Path(__file__).with_name("triton_script.py")


@dataclasses.dataclass
class TritonAnswer:
    """One call's answer: ``ok`` (a value or an infer response), ``error``, and the arrays."""

    ok: Any = None
    error: dict[str, str] | None = None
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def response(self) -> dict[str, Any]:
        assert self.error is None, self.error
        return dict(self.ok["response"])


def _array(entry: dict[str, Any]) -> np.ndarray:
    data = base64.b64decode(entry["data"])
    return np.frombuffer(data, dtype=np.dtype(entry["dtype"])).reshape(entry["shape"])


def _answer(raw: dict[str, Any]) -> TritonAnswer:
    if "error" in raw:
        return TritonAnswer(error=raw["error"])
    value = raw["ok"]
    arrays = {}
    if isinstance(value, dict) and "arrays" in value:
        arrays = {name: _array(entry) for name, entry in value.pop("arrays").items()}
    return TritonAnswer(ok=value, arrays=arrays)


def triton_calls(
    transport: str,
    url: str,
    calls: list[dict[str, Any]],
    *,
    image: bytes = b"",
    headers: dict[str, str] | None = None,
) -> list[TritonAnswer]:
    """Run ``calls`` with tritonclient's ``transport`` ("http" or "grpc") client on ``url``."""
    with tempfile.TemporaryDirectory() as tmp:
        image_path = Path(tmp) / "image"
        image_path.write_bytes(image)
        plan = {
            "transport": transport,
            "url": url,
            "headers": headers or {},
            "image": str(image_path),
            "calls": calls,
        }
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan))
        done = subprocess.run(
            [sys.executable, str(_SCRIPT), str(plan_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    return [_answer(raw) for raw in json.loads(done.stdout)]
