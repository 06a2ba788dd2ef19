"""Responses assembled around TorchServe's result bytes, which are never parsed and re-serialized.

A ``ModelResult`` on the wire is its fields in any order; its ``result`` field (an
``ExplainResult`` sub-message) is length-delimited: tag, length, bytes — exactly as a ``bytes``
field would be. So the gateway serializes the small fields itself (model, status, timings) and
frames the handler's bytes as field ``result`` next to them; an ``ExplainResponse`` frames each
``ModelResult`` the same way as its ``results`` field. The parts are joined once: the result
bytes are copied once, into the response. Clients parse the response as ``ExplainResponse`` /
``ModelResult``. The tags come from the generated descriptors, so a field renumbered in
``explainer.proto`` changes them too.
"""

from __future__ import annotations

from collections.abc import Sequence

from ptxplain.v1 import explainer_pb2 as epb

__all__ = ["explain_response_bytes", "model_result_bytes", "model_result_parts"]

_LENGTH_DELIMITED = 2


def _tag(message: type, field: str) -> bytes:
    number = message.DESCRIPTOR.fields_by_name[field].number  # type: ignore[attr-defined]
    return _varint((number << 3) | _LENGTH_DELIMITED)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_RESULT_TAG = _tag(epb.ModelResult, "result")
_RESULTS_TAG = _tag(epb.ExplainResponse, "results")


def model_result_parts(head: epb.ModelResult, raw: bytes | None) -> list[bytes]:
    """A ``ModelResult`` as byte parts: ``head`` (no ``result`` set) serialized, then ``raw``
    framed as its ``result`` field."""
    parts = [head.SerializeToString()]
    if raw is not None:
        parts += [_RESULT_TAG, _varint(len(raw)), raw]
    return parts


def model_result_bytes(head: epb.ModelResult, raw: bytes | None) -> bytes:
    """One streamed ``ModelResult``."""
    return b"".join(model_result_parts(head, raw))


def explain_response_bytes(
    top: epb.ExplainResponse, results: Sequence[tuple[epb.ModelResult, bytes | None]]
) -> bytes:
    """An ``ExplainResponse``: ``top``'s fields (no ``results`` set), then each model's result."""
    parts = [top.SerializeToString()]
    for head, raw in results:
        inner = model_result_parts(head, raw)
        parts += [_RESULTS_TAG, _varint(sum(map(len, inner))), *inner]
    return b"".join(parts)
