"""One options model for every door: proto, text keys (handler inputs, query parameters), and the
handler's resolution against its model."""

from __future__ import annotations

import pytest

from ptxplain.errors import InvalidOptionError
from ptxplain.explain.methods import get_method
from ptxplain.explain.options import (
    ENCODING_BY_PROTO,
    ENCODINGS,
    ExplainOptions,
    RequestOptions,
    parse_options,
)
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import result_pb2 as pb


def _canonical(name: str) -> str:
    return get_method(name).name


def test_proto_and_text_keys_give_the_same_options() -> None:
    proto = epb.ExplainOptions(
        methods=["gradcam", " layercam "],
        target="1",
        map_size="16x8",
        map_encoding=pb.MAP_ENCODING_FLOAT32,
        normalize=False,
        logits_only=False,
    )
    from_proto = ExplainOptions.from_proto(proto)
    inputs = from_proto.to_inputs()
    assert inputs == {
        "methods": "gradcam,layercam",
        "target": "1",
        "map_size": "16x8",
        "map_encoding": "float32",
        "normalize": "false",
    }
    as_bytes = {k: v.encode() for k, v in inputs.items()}
    assert ExplainOptions.from_inputs(as_bytes) == from_proto == ExplainOptions.from_inputs(inputs)


def test_nothing_set_is_the_handlers_defaults() -> None:
    assert ExplainOptions.from_proto(epb.ExplainOptions()).to_inputs() == {}
    resolved = parse_options({}, num_classes=2, method_name=_canonical)
    assert resolved == RequestOptions() and resolved.wants_maps


def test_resolution_uses_the_models_classes_and_methods() -> None:
    options = ExplainOptions(methods=("GradCAM++", "gradcam++"), target="predicted", map_size="7")
    resolved = options.resolve(num_classes=2, max_map_side=64, method_name=_canonical)
    assert resolved.methods == ("gradcam++",) and resolved.map_size == (7, 7)
    assert resolved.target == "predicted"
    with pytest.raises(InvalidOptionError, match=r"class index in 0\.\.1"):
        ExplainOptions(target="2").resolve(num_classes=2, max_map_side=64, method_name=_canonical)
    with pytest.raises(InvalidOptionError, match=r"outside 1\.\.64"):
        ExplainOptions(map_size="65").resolve(
            num_classes=2, max_map_side=64, method_name=_canonical
        )


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"method": "gradcam"}, "unknown option"),
        ({"methods": ",,,"}, "names no CAM method"),
        ({"normalize": "maybe"}, "true or false"),
        ({"map_encoding": "bfloat16"}, "map_encoding"),
        ({"methods": b"\xff\xfe"}, "UTF-8"),
    ],
)
def test_bad_text_keys_name_the_problem(raw: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidOptionError, match=needle):
        ExplainOptions.from_inputs(raw)


def test_raw_maps_cannot_be_quantized() -> None:
    with pytest.raises(InvalidOptionError, match="needs normalized maps"):
        parse_options(
            {"map_encoding": "png", "normalize": "false"}, num_classes=2, method_name=_canonical
        )


def test_one_table_of_encodings_matches_the_proto_enum() -> None:
    named = {v.name for v in pb.MapEncoding.DESCRIPTOR.values if v.number}
    assert {f"MAP_ENCODING_{name.upper()}" for name in ENCODINGS} == named
    assert set(ENCODING_BY_PROTO) == {
        v.number for v in pb.MapEncoding.DESCRIPTOR.values if v.number
    }
