"""The generated stubs must match protos/ (the wire format's single source of truth)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptxplain.protos import PROTO_ROOT, drift, proto_files
from ptxplain.v1 import explainer_pb2 as epb


def test_generated_stubs_match_the_protos() -> None:
    assert drift() == [], "stubs are stale: run `make protos` and commit the result"


def test_drift_detects_a_changed_proto(tmp_path: Path) -> None:
    for proto in proto_files():
        target = tmp_path / proto.relative_to(PROTO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(proto.read_text())
    result = tmp_path / "ptxplain" / "v1" / "result.proto"
    result.write_text(result.read_text().replace("bool trained = 14;", "bool trained = 30;"))
    assert "ptxplain/v1/result_pb2.py" in drift(tmp_path)


@pytest.mark.parametrize(
    ("twin", "public"),
    [
        (epb.ModelResultBytes, epb.ModelResult),
        (epb.ExplainResponseBytes, epb.ExplainResponse),
    ],
)
def test_the_gateways_twin_messages_match_the_public_ones(twin: type, public: type) -> None:
    """Same names, numbers and labels; only ``result(s)`` differ, as bytes / their own twin."""

    def fields(message: type) -> dict[str, tuple[int, bool]]:
        return {
            f.name: (f.number, f.is_repeated)
            for f in message.DESCRIPTOR.fields  # type: ignore[attr-defined]
        }

    assert fields(twin) == fields(public)
    for field in twin.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        other = public.DESCRIPTOR.fields_by_name[field.name]  # type: ignore[attr-defined]
        if field.name == "result":
            assert field.type == field.TYPE_BYTES and other.type == other.TYPE_MESSAGE
        elif field.name == "results":
            assert field.message_type.name == "ModelResultBytes"
        else:
            assert (field.type, getattr(field.message_type, "full_name", None)) == (
                other.type,
                getattr(other.message_type, "full_name", None),
            )
