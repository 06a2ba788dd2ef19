"""loadtest/outcome.py: shed answers are not failures; a bad model is."""

from __future__ import annotations

import json

from loadtest.outcome import (
    OutcomeKind,
    classify_grpc,
    classify_http,
    classify_model_codes,
    code_name,
    request_name,
)


def _body(**codes: str) -> bytes:
    results = [{"model": m, "status": {"code": c}} for m, c in codes.items()]
    return json.dumps({"results": results}).encode()


def test_model_codes() -> None:
    assert classify_model_codes({"a": "OK", "b": "OK"}).kind is OutcomeKind.OK
    assert classify_model_codes({"a": "RESOURCE_EXHAUSTED"}).kind is OutcomeKind.SHED
    partly = classify_model_codes({"a": "OK", "b": "RESOURCE_EXHAUSTED"})
    assert partly.kind is OutcomeKind.PARTLY_SHED and not partly.failed
    failed = classify_model_codes({"a": "RESOURCE_EXHAUSTED", "b": "DEADLINE_EXCEEDED"})
    assert failed.failed and "b: DEADLINE_EXCEEDED" in failed.detail
    assert classify_model_codes({}).failed


def test_grpc() -> None:
    assert classify_grpc("RESOURCE_EXHAUSTED", "bound 32", {}).kind is OutcomeKind.SHED
    timeout = classify_grpc("DEADLINE_EXCEEDED", "late", {})
    assert timeout.failed and timeout.detail == "DEADLINE_EXCEEDED: late"
    assert classify_grpc("OK", "", {"a": "OK"}).kind is OutcomeKind.OK
    assert code_name(8) == "RESOURCE_EXHAUSTED" and code_name(99) == "CODE_99"


def test_http() -> None:
    assert classify_http(429, b"{}", fan_out=True).kind is OutcomeKind.SHED
    assert classify_http(504, b"late", fan_out=True).failed
    assert classify_http(200, _body(a="OK"), fan_out=True).kind is OutcomeKind.OK
    assert classify_http(200, _body(a="OK", b="UNAVAILABLE"), fan_out=True).failed
    assert classify_http(200, b"<html>", fan_out=True).failed
    assert classify_http(200, b"[]", fan_out=False).kind is OutcomeKind.OK
    assert classify_http(0, b"", fan_out=False).failed  # no connection


def test_request_names() -> None:
    shed = classify_grpc("RESOURCE_EXHAUSTED", "", {})
    assert request_name("explain all", shed) == "explain all [shed]"
    partly = classify_model_codes({"a": "OK", "b": "RESOURCE_EXHAUSTED"})
    assert request_name("explain all", partly) == "explain all [partly shed]"
    assert request_name("explain all", classify_model_codes({"a": "OK"})) == "explain all"
