"""The gateway's gRPC API in-process against fake TorchServes (one layer faked): fan-out,
partial answers, streaming order, deadlines, shedding, edge errors, health, reflection, auth,
request ids, metrics and logs."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import explainer_pb2_grpc
from services.gateway import ExplainerClient, RunningGateway
from services.gateway.logs import JsonFormatter
from tests.conftest import wait_until
from tests.factories.dicom_factory import PATIENT_ID, PATIENT_NAME, make_dicom
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import FakeMetadata, FakeModel, FakeTorchServe, gateway_config, png_bytes

MODELS = {
    "fast": FakeModel(),
    "slow": FakeModel(delay_s=0.4),
    "late": FakeModel(delay_s=1.5),
    "bad": FakeModel(item_error=3),
}


@pytest.fixture(scope="module")
def fakes(loop_thread: LoopThread) -> Iterator[tuple[FakeTorchServe, FakeTorchServe]]:
    main = FakeTorchServe(MODELS)
    other = FakeTorchServe({"other": FakeModel(), "sleepy": FakeModel(delay_s=2.0)})
    loop_thread.run(main.start())
    loop_thread.run(other.start())
    yield main, other
    loop_thread.run(main.stop())
    loop_thread.run(other.stop())


@pytest.fixture(scope="module")
def gateway(
    loop_thread: LoopThread, fakes: tuple[FakeTorchServe, FakeTorchServe]
) -> Iterator[RunningGateway]:
    main, other = fakes
    config = gateway_config(
        {"main": (main.target, tuple(MODELS)), "small": (other.target, ("other", "sleepy"))},
        max_image_bytes=200_000,
        # Room to answer on a loaded 2-core CI machine: 10 % of a 1 s deadline (the cap).
        deadline_reserve_ms=100,
        backend_overrides={"small": {"max_in_flight": 1}},
    )
    running = loop_thread.start_gateway(config, FakeMetadata())
    yield running
    loop_thread.run(running.stop(0))


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Iterator[ExplainerClient]:
    with ExplainerClient(f"127.0.0.1:{gateway.grpc_port}") as c:
        yield c


def codes(response: epb.ExplainResponse) -> dict[str, int]:
    return {r.model: r.status.code for r in response.results}


def test_one_request_fans_out_and_a_bad_model_fails_alone(client: ExplainerClient) -> None:
    response, request_id = client.explain(png_bytes(), ["slow", "bad", "fast", "other"])
    assert [r.model for r in response.results] == ["slow", "bad", "fast", "other"]
    assert codes(response) == {"slow": 0, "bad": 3, "fast": 0, "other": 0}
    good = response.results[0]
    assert good.result.maps[0].height == 4 and good.result.status.code == 0
    assert good.architecture == "resnet18" and not good.trained
    assert good.gateway_timings.backend_ms >= 400 and good.gateway_timings.attempts == 1
    assert response.request_id == request_id and len(request_id) == 32
    assert response.image_format == "png" and response.total_ms >= 400


def test_no_model_list_means_every_ready_model(client: ExplainerClient) -> None:
    response, _ = client.explain(png_bytes(), models=[], timeout_s=10)
    assert sorted(codes(response)) == ["bad", "fast", "late", "other", "sleepy", "slow"]


def test_stream_sends_each_result_when_ready_and_holds_failures(client: ExplainerClient) -> None:
    started = time.perf_counter()
    arrivals = [
        (r.model, time.perf_counter() - started)
        for r in client.stream(png_bytes(), ["slow", "bad", "fast"])
    ]
    order = [name for name, _ in arrivals]
    assert order[0] == "fast" and order[-1] == "slow" and "bad" in order
    assert order.index("bad") > order.index("fast")  # a failure waits for a first success
    assert arrivals[-1][1] - arrivals[0][1] > 0.2  # the fast one did not wait for the slow one


def test_when_every_model_fails_the_call_fails_with_their_code(client: ExplainerClient) -> None:
    for call in (
        lambda: client.explain(png_bytes(), ["bad"]),
        lambda: list(client.stream(png_bytes(), ["bad"])),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "bad: bad item" in info.value.details()


def test_client_deadline_bounds_each_model(client: ExplainerClient) -> None:
    started = time.perf_counter()
    response, _ = client.explain(png_bytes(), ["late", "fast"], timeout_s=1.0)
    assert time.perf_counter() - started < 1.0
    assert codes(response) == {"late": 4, "fast": 0}  # DEADLINE_EXCEEDED, OK
    assert "deadline" in response.results[0].status.message


def test_past_the_in_flight_bound_a_model_is_shed_at_once(
    client: ExplainerClient, gateway: RunningGateway
) -> None:
    small = next(b for b in gateway.gateway.backends if b.name == "small")
    holder = threading.Thread(target=lambda: client.explain(png_bytes(), ["sleepy"]))
    holder.start()
    wait_until(lambda: small.in_flight == 1, 10, "the holder's call in flight")
    started = time.perf_counter()
    response, _ = client.explain(png_bytes(), ["sleepy", "fast"])
    elapsed = time.perf_counter() - started
    with pytest.raises(grpc.RpcError) as info:
        client.explain(png_bytes(), ["sleepy"])
    holder.join()
    # Shed at once: well before the 2 s the holder keeps the only slot (margin for a loaded CPU).
    assert elapsed < 1.0 and codes(response) == {"sleepy": 8, "fast": 0}
    assert "bound 1" in response.results[0].status.message
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("image", "models", "needle"),
    [
        (b"", [], "empty image"),
        (b"GIF89a" + bytes(300), [], "not a PNG, JPEG or DICOM"),
        (png_bytes() + bytes(200_001 - len(png_bytes())), [], "cap of 200000 bytes"),
        (png_bytes(), ["fast", "nosuch"], "unknown model 'nosuch'"),
    ],
)
def test_bad_requests_fail_at_the_edge(
    client: ExplainerClient,
    fakes: tuple[FakeTorchServe, FakeTorchServe],
    image: bytes,
    models: list[str],
    needle: str,
) -> None:
    calls = len(fakes[0].calls)
    with pytest.raises(grpc.RpcError) as info:
        client.explain(image, models)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in info.value.details()
    assert len(fakes[0].calls) == calls  # no model was asked


def test_image_far_over_the_cap_is_refused_by_grpc_itself(client: ExplainerClient) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.explain(png_bytes() + bytes(2 * 1024 * 1024))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_request_id_is_echoed_in_metadata(gateway: RunningGateway) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}")
    stub = epb_stub(channel)
    _, call = stub.Explain.with_call(
        epb.ExplainRequest(image=png_bytes(), models=["fast"]),
        metadata=(("x-request-id", "abc-123"),),
    )
    assert dict(call.initial_metadata())["x-request-id"] == "abc-123"
    assert dict(call.trailing_metadata())["x-request-id"] == "abc-123"
    with pytest.raises(grpc.RpcError) as info:
        stub.Explain(epb.ExplainRequest(image=b""), metadata=(("x-request-id", "err-1"),))
    assert dict(info.value.trailing_metadata())["x-request-id"] == "err-1"
    channel.close()


def epb_stub(channel: grpc.Channel) -> explainer_pb2_grpc.ExplainerStub:
    return explainer_pb2_grpc.ExplainerStub(channel)


def test_list_models_health_and_reflection(
    client: ExplainerClient, gateway: RunningGateway
) -> None:
    models = {m.name: m for m in client.list_models()}
    assert set(models) == {"fast", "slow", "late", "bad", "other", "sleepy"}
    fast = models["fast"]
    assert (fast.architecture, fast.input_size, fast.depth, fast.trained, fast.ready) == (
        "resnet18",
        64,
        18,
        False,
        True,
    )
    assert fast.parameters == 11177538 and fast.flops > 0 and fast.threshold == pytest.approx(0.4)
    assert fast.backend == "main" and models["sleepy"].backend == "small"
    assert client.health() == "SERVING" and client.health("ptxplain.v1.Explainer") == "SERVING"
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}")
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(
        iter(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
    )
    names = {s.name for s in answer.list_services_response.service}
    assert {"ptxplain.v1.Explainer", "grpc.health.v1.Health"} <= names
    channel.close()


def test_a_down_backend_fails_its_models_only_and_comes_back(
    loop_thread: LoopThread, client: ExplainerClient, fakes: tuple[FakeTorchServe, FakeTorchServe]
) -> None:
    other = fakes[1]
    loop_thread.run(other.stop())
    try:
        response, _ = client.explain(png_bytes(), ["fast", "other"])
        down = response.results[1]
        assert codes(response) == {"fast": 0, "other": 14}
        assert (
            down.gateway_timings.attempts == 3
            and "failed to connect" in down.status.message.lower()
        )
        ready = {m.name: m.ready for m in client.list_models()}
        assert ready["other"] is False and ready["fast"] is True
    finally:
        loop_thread.run(other.start())
    response, _ = client.explain(png_bytes(), ["fast", "other"], timeout_s=10)
    assert codes(response) == {"fast": 0, "other": 0}


def test_metrics_count_requests_results_and_shedding(gateway: RunningGateway) -> None:
    text = gateway.gateway.metrics.render().decode()
    assert 'ptxplain_gateway_requests_total{api="grpc",code="OK",method="Explain"}' in text
    assert 'ptxplain_gateway_shed_total{backend="small",model="sleepy"}' in text
    assert 'ptxplain_gateway_model_results_total{code="INVALID_ARGUMENT",model="bad"}' in text
    assert 'ptxplain_gateway_stage_seconds_count{model="fast",stage="forward_cam"}' in text
    assert (
        'ptxplain_gateway_backend_errors_total{backend="small",code="UNAVAILABLE",model="other"}'
        in text
    )


def test_logs_are_json_with_the_request_id_and_no_dicom_identifiers(
    client: ExplainerClient,
) -> None:
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(JsonFormatter().format(record))

    handler = Capture()
    logger = logging.getLogger("services.gateway")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        dicom = make_dicom(np.full((16, 16), 1234, dtype=np.uint16))
        _, request_id = client.explain(dicom, ["fast"])
        with pytest.raises(grpc.RpcError):
            client.explain(dicom[132:], ["fast"])  # no preamble: refused at the edge
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(r) for r in records]
    access = next(line for line in lines if line.get("request_id") == request_id)
    assert access["image_format"] == "dicom" and access["results"] == {"fast": "OK"}
    text = "\n".join(records)
    assert PATIENT_NAME not in text and PATIENT_ID not in text and "Doe" not in text
    assert "first bytes" not in text  # edge decode errors are logged by type, not by text
