"""End to end with the session's real TorchServe (tests/conftest.py: five random-init models at
64 px, token auth on): gRPC unary and streaming, HTTP, ListModels from the handlers' metadata,
the 32 MiB cap at every hop, and faults — a backend that goes down and comes back, a model past
its deadline, a model that errors, a load past the in-flight bound, an expired inference key."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests

from ptxplain.errors import Code
from ptxplain.explain.result_codec import decode_map
from ptxplain.imaging.shared_decode import default_dir
from ptxplain.machine import EngineGate, cpu_cores
from ptxplain.v1 import explainer_pb2 as epb
from services.gateway import BackendConfig, ExplainerClient, GatewayConfig, RunningGateway
from services.torchserve import TokenSource
from tests.conftest import LIVE_ARCHS, LiveTorchServe, wait_until
from tests.factories.dicom_factory import make_dicom
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import png_bytes
from tests.gateway.proxy import TcpProxy

pytestmark = pytest.mark.live
MIB = 1024 * 1024
MAIN = ("vgg16_bn", "vit_s16", "densenet121", "efficientnet_b0")


def backend(
    live: LiveTorchServe, name: str, models: tuple[str, ...], grpc_target: str = "", **kw: object
) -> BackendConfig:
    ts = live.config
    return BackendConfig(
        name=name,
        grpc=grpc_target or ts.grpc_inference_target,
        management=ts.management_url,
        models=models,
        key_file=ts.key_file,
        **kw,  # type: ignore[arg-type]
    )


@dataclasses.dataclass
class LiveStack:
    running: RunningGateway
    proxy: TcpProxy
    client: ExplainerClient

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.running.http_port}"


@pytest.fixture(scope="module")
def stack(torchserve: LiveTorchServe, loop_thread: LoopThread) -> Iterator[LiveStack]:
    """resnet18 sits behind a cuttable proxy with an in-flight bound of 2; the rest direct;
    'ghost' is routed to TorchServe, which does not serve it."""
    port = int(torchserve.config.grpc_inference_target.rsplit(":", 1)[1])
    proxy = TcpProxy("127.0.0.1", port)
    loop_thread.run(proxy.start())
    config = GatewayConfig(
        backends=(
            backend(torchserve, "main", MAIN),
            backend(
                torchserve,
                "proxied",
                ("resnet18",),
                f"127.0.0.1:{proxy.port}",
                max_in_flight=2,
                connect_retries=1,
            ),
            backend(torchserve, "ghosts", ("ghost",)),
        ),
        grpc_port=0,
        http_port=0,
        catalog_refresh_s=1.0,
    )
    running = loop_thread.start_gateway(config)
    client = ExplainerClient(f"127.0.0.1:{running.grpc_port}")
    yield LiveStack(running, proxy, client)
    client.close()
    loop_thread.run(running.stop(0))
    loop_thread.run(proxy.stop())


def codes(response: epb.ExplainResponse) -> dict[str, str]:
    return {r.model: Code(r.status.code).name for r in response.results}


def test_every_ready_model_answers_over_grpc(stack: LiveStack) -> None:
    image = png_bytes(120, 90)
    response, request_id = stack.client.explain(image, options=epb.ExplainOptions(map_size="input"))
    assert set(codes(response)) == {*MAIN, "resnet18"}  # not the ghost: it is not ready
    assert set(codes(response).values()) == {"OK"}
    for item in response.results:
        result = item.result
        assert not item.trained and not result.trained and item.architecture == result.architecture
        assert item.trained_on == result.trained_on == "untrained"
        assert len(result.probabilities) == 2 and result.threshold == pytest.approx(0.5)
        heat = decode_map(result.maps[0])
        assert heat.shape == (64, 64) and np.isfinite(heat).all()
        assert (result.geometry.original_height, result.geometry.original_width) == (120, 90)
        assert item.gateway_timings.backend_ms >= result.timings.forward_cam_ms
    assert response.request_id == request_id


def test_every_worker_waits_for_a_free_core_on_the_hosts_gate(stack: LiveStack) -> None:
    """The five workers (five processes) take turns on one gate: while this test holds every
    slot, each model's batch waits, and its result says so (core_wait_ms, not in forward_cam)."""
    slots = cpu_cores()
    gate = EngineGate(str(default_dir()), slots)  # the workers' auto gate (tests/conftest.py)
    image = png_bytes(96, 80, seed=5)
    with ThreadPoolExecutor(1) as pool:
        with gate.hold(slots) as held:
            assert held
            pending = pool.submit(stack.client.explain, image)
            # Once every model's batch waits at the gate, hold it 0.4 s more.
            every = len(LIVE_ARCHS)
            wait_until(lambda: (gate.waiting() or 0) >= every, 30, "every batch at the gate")
            time.sleep(0.4)
        response, _ = pending.result(timeout=60)
    assert set(codes(response).values()) == {"OK"} and len(response.results) == 5
    for item in response.results:
        timings = item.result.timings
        assert timings.core_wait_ms >= 300, item.model
        assert timings.forward_cam_ms < timings.core_wait_ms, item.model
        assert 0 < timings.forward_cam_cpu_ms < timings.core_wait_ms, item.model
    unheld, _ = stack.client.explain(image)
    assert max(item.result.timings.core_wait_ms for item in unheld.results) < 300


def test_one_request_is_decoded_once_for_every_model(stack: LiveStack) -> None:
    """Five workers (five processes) get the same image; one decodes it, four read its decode,
    and every answer is the one a worker decoding alone gives (decode_cache_mb 0 is tested
    against in-process in tests/handlers)."""
    image = png_bytes(150, 110, seed=int(time.time_ns() % 2**31))  # never seen before
    response, _ = stack.client.explain(image)
    assert set(codes(response).values()) == {"OK"} and len(response.results) == 5
    shared = sorted(item.result.timings.decode_shared for item in response.results)
    assert shared == [False, True, True, True, True]
    again, _ = stack.client.explain(image)
    assert all(item.result.timings.decode_shared for item in again.results)
    for first, second in zip(response.results, again.results, strict=True):
        assert first.result.logits == second.result.logits


def test_stream_and_http_give_the_same_models(stack: LiveStack) -> None:
    image = make_dicom(np.linspace(0, 4000, 96 * 80, dtype=np.uint16).reshape(96, 80))
    streamed = {r.model: r for r in stack.client.stream(image, ["resnet18", "vit_s16"])}
    assert set(streamed) == {"resnet18", "vit_s16"} and all(
        r.status.code == 0 for r in streamed.values()
    )
    answer = requests.post(
        f"{stack.http}/v1/explain?models=resnet18,vit_s16&map_encoding=png", data=image, timeout=30
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["image_format"] == "dicom" and answer.headers["x-request-id"] == body["request_id"]
    for item in body["results"]:
        assert item["status"]["code"] == "OK" and item["trained"] is False
        streamed_p = streamed[item["model"]].result.positive_probability
        assert item["result"]["positive_probability"] == pytest.approx(streamed_p, abs=1e-6)
        png = base64.b64decode(item["result"]["maps"][0]["data"])
        assert png.startswith(b"\x89PNG")


def test_list_models_carries_the_handlers_metadata(stack: LiveStack) -> None:
    models = {m.name: m for m in stack.client.list_models()}
    resnet = models["resnet18"]
    assert (resnet.architecture, resnet.family, resnet.input_size, resnet.depth) == (
        "resnet18",
        "resnet",
        64,
        18,
    )
    assert resnet.parameters > 10_000_000 and resnet.flops > 0 and resnet.version
    assert (
        resnet.ready
        and not resnet.trained
        and list(resnet.classes) == ["no_pneumothorax", "pneumothorax"]
    )
    assert models["vit_s16"].family == "vit" and models["ghost"].ready is False
    assert resnet.trained_on == "untrained" and list(resnet.cam_grid) == [2, 2]  # 64 px / 32
    assert list(models["vit_s16"].cam_grid) == [4, 4]  # 64 px / 16


def test_an_image_just_under_the_cap_goes_through_every_hop(stack: LiveStack) -> None:
    base = png_bytes(64, 64)
    under = base + bytes(32 * MIB - 1 - len(base))
    response, _ = stack.client.explain(under, ["resnet18"], epb.ExplainOptions(logits_only=True))
    assert codes(response) == {"resnet18": "OK"} and response.image_bytes == 32 * MIB - 1
    over = base + bytes(32 * MIB + 1 - len(base))
    with pytest.raises(grpc.RpcError) as info:
        stack.client.explain(over, ["resnet18"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cap of 33554432 bytes (32 MiB)" in info.value.details()
    answer = requests.post(f"{stack.http}/v1/explain?models=resnet18", data=over, timeout=30)
    assert answer.status_code == 413 and "33554432" in answer.json()["error"]["message"]


def test_bad_image_is_each_models_own_error(stack: LiveStack) -> None:
    broken = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # sniffed as PNG, rejected by every handler
    with pytest.raises(grpc.RpcError) as info:
        stack.client.explain(broken, ["resnet18", "vit_s16"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resnet18: " in info.value.details() and "vit_s16: " in info.value.details()
    response, _ = stack.client.explain(png_bytes(), ["resnet18", "ghost"])
    assert codes(response) == {"resnet18": "OK", "ghost": "INVALID_ARGUMENT"}
    assert "ghost" in response.results[1].status.message
    assert stack.client.explain(png_bytes(), ["ghost", "vit_s16"])[0].results[1].status.code == 0


def test_a_backend_down_fails_its_model_only_and_is_used_again(
    stack: LiveStack, loop_thread: LoopThread
) -> None:
    loop_thread.run(stack.proxy.stop())
    try:
        response, _ = stack.client.explain(png_bytes(), ["resnet18", "vit_s16"])
        assert codes(response) == {"resnet18": "UNAVAILABLE", "vit_s16": "OK"}
        assert response.results[0].gateway_timings.attempts == 2
    finally:
        loop_thread.run(stack.proxy.start())
    deadline = time.monotonic() + 10
    while True:  # grpc reconnects with a backoff of at most 1 s
        response, _ = stack.client.explain(png_bytes(), ["resnet18", "vit_s16"])
        if codes(response)["resnet18"] == "OK" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert codes(response) == {"resnet18": "OK", "vit_s16": "OK"}


def test_past_the_in_flight_bound_the_model_is_shed_promptly(stack: LiveStack) -> None:
    def one(index: int) -> tuple[dict[str, str], float, float]:
        started = time.perf_counter()
        response, _ = stack.client.explain(png_bytes(), ["resnet18", "vit_s16"])
        shed = [r for r in response.results if r.model == "resnet18" and r.status.code == 8]
        return (
            codes(response),
            time.perf_counter() - started,
            shed[0].gateway_timings.gateway_ms if shed else -1,
        )

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(8)))
    resnet = [c["resnet18"] for c, _, _ in outcomes]
    assert all(c["vit_s16"] == "OK" for c, _, _ in outcomes)
    assert "RESOURCE_EXHAUSTED" in resnet and "OK" in resnet
    assert all(0 <= ms < 20 for _, _, ms in outcomes if ms >= 0)  # refused in the gateway at once
    assert stack.client.explain(png_bytes(), ["resnet18"])[0].results[0].status.code == 0


def test_a_model_past_its_deadline_fails_alone(
    torchserve: LiveTorchServe, loop_thread: LoopThread
) -> None:
    config = GatewayConfig(
        backends=(backend(torchserve, "main", ("resnet18", "vgg16_bn")),),
        grpc_port=0,
        http_port=None,
        model_timeouts_s={"vgg16_bn": 0.005},
    )
    running = loop_thread.start_gateway(config)
    try:
        with ExplainerClient(f"127.0.0.1:{running.grpc_port}") as client:
            response, _ = client.explain(png_bytes())
            assert codes(response) == {"resnet18": "OK", "vgg16_bn": "DEADLINE_EXCEEDED"}
            assert "deadline" in response.results[1].status.message
            with pytest.raises(grpc.RpcError) as info:  # a client deadline too tight for any model
                client.explain(png_bytes(), timeout_s=0.01)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        loop_thread.run(running.stop(0))


def test_an_expired_inference_key_is_replaced(stack: LiveStack, torchserve: LiveTorchServe) -> None:
    ts = torchserve.config
    old = TokenSource(ts.key_file, ts.management_url).current()
    TokenSource(ts.key_file, ts.management_url).rotate()  # the old key stops working at once
    response, _ = stack.client.explain(png_bytes(), ["vit_s16"])
    assert codes(response) == {"vit_s16": "OK"}
    assert stack.running.gateway.backends[0].tokens is not None
    assert stack.running.gateway.backends[0].tokens.current() != old


def test_the_gateway_keeps_serving_concurrent_streams(stack: LiveStack) -> None:
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            assert len(list(stack.client.stream(png_bytes(), ["vit_s16", "densenet121"]))) == 2
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_explain_cli_lays_each_map_on_the_original_image(stack: LiveStack, tmp_path: Path) -> None:
    from PIL import Image

    from ptxplain.cli import main

    image = tmp_path / "chest.png"
    image.write_bytes(png_bytes(150, 100))
    out = tmp_path / "out"
    argv = [
        "explain",
        str(image),
        "--gateway",
        f"127.0.0.1:{stack.running.grpc_port}",
        "--out",
        str(out),
        "--models",
        "resnet18,vit_s16,ghost",
        "--methods",
        "gradcam,gradcam++",
    ]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["ghost"]["status"] == "INVALID_ARGUMENT"
    for model in ("resnet18", "vit_s16"):
        entry = summary["models"][model]
        assert entry["status"] == "OK" and entry["trained"] is False
        assert entry["trained_on"] == "untrained"
        assert entry["overlays"] == [f"{model}_gradcam.png", f"{model}_gradcampp.png"]
        with Image.open(out / entry["overlays"][1]) as overlay:
            # the film at its own size on top, the caption and colour bar under it
            assert overlay.width >= 100 and overlay.height > 150 and overlay.mode == "RGB"
