"""Results pass through byte-for-byte: the gateway's twin messages, holding TorchServe's bytes as
they came, parse on the client as the public messages."""

from __future__ import annotations

from ptxplain.torchserve import inference_pb2
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import result_pb2 as pb
from services.gateway.backend import _with_model, encode_predictions_request
from tests.gateway.fakes import result_bytes


def test_result_bytes_pass_through_untouched() -> None:
    raw = result_bytes("resnet18", side=7)
    top = epb.ExplainResponse(request_id="r1", image_format="png", image_bytes=10, total_ms=1.5)
    ok = epb.ModelResult(model="resnet18", status=pb.Status(code=0, http_status=200), trained=True)
    down = epb.ModelResult(
        model="vit_s16", status=pb.Status(code=14, message="down", http_status=503)
    )
    twin = epb.ExplainResponseBytes.FromString(top.SerializeToString())
    twin.results.add().ParseFromString(ok.SerializeToString())
    twin.results[0].result = raw
    twin.results.add().ParseFromString(down.SerializeToString())
    data = twin.SerializeToString()
    parsed = epb.ExplainResponse.FromString(data)
    assert parsed.results[0].result == pb.ExplainResult.FromString(raw)
    assert parsed.results[0].result.SerializeToString() == raw and parsed.results[0].trained
    assert not parsed.results[1].HasField("result") and parsed.results[1].status.code == 14
    assert (parsed.request_id, parsed.total_ms) == ("r1", 1.5)
    expected = epb.ExplainResponse()
    expected.CopyFrom(top)
    expected.results.add().CopyFrom(ok)
    expected.results[0].result.ParseFromString(raw)
    expected.results.add().CopyFrom(down)
    assert parsed == expected


def test_a_streamed_result_with_a_large_map_frames_its_length() -> None:
    raw = result_bytes("m", side=300)  # a length that needs a 3-byte varint
    assert len(raw) > 2**14
    parsed = epb.ModelResult.FromString(
        epb.ModelResultBytes(model="m", result=raw).SerializeToString()
    )
    assert parsed.result.SerializeToString() == raw and parsed.model == "m"


def test_head_reads_status_and_timings_only() -> None:
    head = epb.ExplainResultHead.FromString(result_bytes("m", code=3, message="bad item"))
    assert (head.status.code, head.status.message, head.model) == (3, "bad item", "m")
    assert head.timings.forward_cam_ms == 3


def test_shared_request_plus_model_name_is_a_predictions_request() -> None:
    shared = encode_predictions_request({"data": b"\x89PNG...", "methods": b"gradcam"})
    request = inference_pb2.PredictionsRequest.FromString(_with_model("vgg16", shared))
    assert request.model_name == "vgg16"
    assert dict(request.input) == {"data": b"\x89PNG...", "methods": b"gradcam"}
