"""Classify one answer of the gateway: ok, shed, partly shed, or failed.

Shedding is the gateway refusing work past its in-flight bound: RESOURCE_EXHAUSTED (gRPC) or
429 (HTTP) for the whole call, or for some models of a fan-out whose other models answered.
It is the intended answer to overload, so it is recorded under its own request name
(``"<task> [shed]"``, ``"<task> [partly shed]"``) and never as a failure. Everything else that
is not OK, for the call or for any one model (a deadline, an unavailable backend, a handler
error), is a failure.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import Any

from ptxplain.errors import Code

__all__ = [
    "SHED_CODE",
    "Outcome",
    "OutcomeKind",
    "classify_grpc",
    "classify_http",
    "classify_model_codes",
    "code_name",
    "request_name",
]

SHED_CODE = Code.RESOURCE_EXHAUSTED.name
_SHED_HTTP = 429


class OutcomeKind(enum.Enum):
    OK = "ok"
    SHED = "shed"
    PARTLY_SHED = "partly shed"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.kind is OutcomeKind.FAILED


def request_name(task: str, outcome: Outcome) -> str:
    """The Locust request name: the task, with `[shed]` / `[partly shed]` for shed answers."""
    if outcome.kind in (OutcomeKind.SHED, OutcomeKind.PARTLY_SHED):
        return f"{task} [{outcome.kind.value}]"
    return task


def code_name(code: int) -> str:
    """A status number as its name (``8`` -> ``RESOURCE_EXHAUSTED``)."""
    try:
        return Code(code).name
    except ValueError:
        return f"CODE_{code}"


def classify_model_codes(codes: Mapping[str, str]) -> Outcome:
    """One fan-out answered OK as a call: judge it by its models' status names."""
    if not codes:
        return Outcome(OutcomeKind.FAILED, "the answer has no model results")
    bad = {model: code for model, code in codes.items() if code != Code.OK.name}
    if not bad:
        return Outcome(OutcomeKind.OK)
    failed = {model: code for model, code in bad.items() if code != SHED_CODE}
    if failed:
        listed = ", ".join(f"{model}: {code}" for model, code in sorted(failed.items()))
        return Outcome(OutcomeKind.FAILED, f"model(s) not OK: {listed}")
    if len(bad) == len(codes):
        return Outcome(OutcomeKind.SHED, f"{len(bad)} model(s) shed")
    return Outcome(OutcomeKind.PARTLY_SHED, f"{len(bad)} of {len(codes)} model(s) shed")


def classify_grpc(code_name_: str, details: str, model_codes: Mapping[str, str]) -> Outcome:
    """A gRPC call: its status name, its details, and (when OK) each model's status name."""
    if code_name_ == Code.OK.name:
        return classify_model_codes(model_codes)
    if code_name_ == SHED_CODE:
        return Outcome(OutcomeKind.SHED, details)
    return Outcome(OutcomeKind.FAILED, f"{code_name_}: {details}")


def _model_codes(body: Any) -> dict[str, str] | None:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        return None
    codes = {}
    for result in body["results"]:
        status = result.get("status") if isinstance(result, dict) else None
        if not isinstance(status, dict) or "code" not in status:
            return None
        codes[str(result.get("model", ""))] = str(status["code"])
    return codes


def classify_http(status: int, body: bytes, *, fan_out: bool) -> Outcome:
    """An HTTP answer: its status and body (JSON). ``fan_out``: a /v1/explain answer, whose
    per-model statuses are judged too."""
    if status == _SHED_HTTP:
        return Outcome(OutcomeKind.SHED, "429")
    excerpt = body[:300].decode(errors="replace")
    if not 200 <= status < 300:
        return Outcome(OutcomeKind.FAILED, f"HTTP {status}: {excerpt}")
    if not fan_out:
        return Outcome(OutcomeKind.OK)
    try:
        codes = _model_codes(json.loads(body))
    except ValueError:
        codes = None
    if codes is None:
        return Outcome(OutcomeKind.FAILED, f"HTTP {status} with a body that is no explain answer")
    return classify_model_codes(codes)
