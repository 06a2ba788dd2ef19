"""The generated stubs must match protos/ (the wire format's single source of truth)."""

from __future__ import annotations

from pathlib import Path

from ptxplain.protos import PROTO_ROOT, drift, proto_files


def test_generated_stubs_match_the_protos() -> None:
    assert drift() == [], "stubs are stale: run `make protos` and commit the result"


def test_drift_detects_a_changed_proto(tmp_path: Path) -> None:
    for proto in proto_files():
        target = tmp_path / proto.relative_to(PROTO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(proto.read_text())
    result = tmp_path / "ptxplain" / "v1" / "result.proto"
    result.write_text(result.read_text().replace("bool trained = 14;", "bool trained = 15;"))
    assert "ptxplain/v1/result_pb2.py" in drift(tmp_path)
