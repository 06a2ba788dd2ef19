"""The TorchServe handler in-process, with TorchServe's own Context and RequestProcessor.

Every bad input (empty, not an image, truncated, over a cap, unknown option …), alone and mixed
into a batch with good items: the handler never raises, the bad item gets an error status naming the problem (and a 4xx), the others are served
exactly as they would be alone.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from ts.context import Context, RequestProcessor

from handlers.torchserve_handler import CONTENT_TYPE, HandlerConfig, PtxplainHandler
from ptxplain.errors import Code, ConfigError
from ptxplain.explain.result_codec import decode_map
from ptxplain.imaging.shared_decode import ENV_DIR
from ptxplain.machine import cpu_cores, remove_gates
from ptxplain.models.meta import META_FILENAME, ModelMeta
from ptxplain.models.registry import get_spec
from ptxplain.models.weights import save_weights
from ptxplain.v1 import result_pb2 as pb
from tests.factories.dicom_factory import make_dicom
from tests.factories.image_factory import all_zero_png, raw_png

SIZE = 64


def png_bytes(height: int = 80, width: int = 60, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resnet18")
    spec = get_spec("resnet18")
    torch.manual_seed(0)
    save_weights(spec.build(SIZE), folder / "weights.safetensors")
    ModelMeta.for_spec(spec, SIZE, threshold=0.4).write(folder / META_FILENAME)
    return folder


def make_context(model_dir: Path, n: int, headers: dict | None = None, **settings) -> Context:
    context = Context(
        "resnet18-test",
        str(model_dir),
        {"model": {"serializedFile": "weights.safetensors"}},
        n,
        None,
        "0.12.0",
        model_yaml_config={"ptxplain": {"torch_threads": 1, **settings}},
    )
    context.request_processor = [RequestProcessor(dict(headers or {})) for _ in range(n)]
    return context


@pytest.fixture(scope="module")
def handler(model_dir: Path) -> PtxplainHandler:
    service = PtxplainHandler()
    service.initialize(make_context(model_dir, 1, max_pixels=1_000_000))
    return service


def run(handler: PtxplainHandler, model_dir: Path, rows: list[dict]):
    context = make_context(model_dir, len(rows))
    outputs = handler.handle(rows, context)
    results = []
    for i, raw in enumerate(outputs):
        assert context.get_response_content_type(i) == CONTENT_TYPE
        result = pb.ExplainResult.FromString(raw)
        results.append((result, context.get_response_status(i)[0]))
    return results


def test_good_png_gives_logits_probabilities_map_and_geometry(handler, model_dir) -> None:
    [(result, status)] = run(handler, model_dir, [{"body": png_bytes(80, 60)}])
    assert result.status.code == Code.OK and status == 200
    assert result.architecture == "resnet18" and result.model == "resnet18-test"
    assert len(result.logits) == 2 and sum(result.probabilities) == pytest.approx(1, abs=1e-5)
    assert result.threshold == pytest.approx(0.4) and result.trained is False
    assert result.positive == (result.positive_probability >= 0.4)
    [cam] = result.maps
    assert (cam.method, cam.height, cam.width) == ("gradcam", 2, 2)  # layer4 grid at 64 px
    assert cam.space == pb.MAP_SPACE_LAYER and cam.normalized
    values = decode_map(cam)
    assert values.min() >= 0 and values.max() <= 1
    g = result.geometry
    assert (g.original_height, g.original_width, g.input_height) == (80, 60, SIZE)
    assert (g.content_height, g.content_width) == (64, 48) and g.pad_left == 8
    assert result.timings.batch_size == 1 and result.timings.forward_cam_ms > 0


def test_dicom_is_served(handler, model_dir) -> None:
    pixels = np.random.default_rng(1).integers(0, 4095, (96, 96), dtype=np.uint16)
    [(result, status)] = run(handler, model_dir, [{"data": make_dicom(pixels, bits_stored=12)}])
    assert status == 200 and result.status.code == Code.OK and len(result.maps) == 1


@pytest.mark.parametrize("encoding", ["float16", "float32", "uint8", "png"])
def test_encodings_round_trip(handler, model_dir, encoding) -> None:
    rows = [
        {"body": png_bytes(), "map_encoding": b"float32", "map_size": b"input"},
        {"body": png_bytes(), "map_encoding": encoding.encode(), "map_size": b"input"},
    ]
    (reference, _), (result, _) = run(handler, model_dir, rows)
    exact, encoded = decode_map(reference.maps[0]), decode_map(result.maps[0])
    assert encoded.shape == (SIZE, SIZE) and exact.std() > 0.01
    tolerance = {"float32": 0, "float16": 1e-3, "uint8": 0.5 / 255 + 1e-6, "png": 0.5 / 255 + 1e-6}
    assert np.abs(exact - encoded).max() <= tolerance[encoding]


def test_options_methods_target_size_raw_and_logits_only(handler, model_dir) -> None:
    rows = [
        {"body": png_bytes(), "methods": b"gradcam,layercam,eigencam", "target": b"0"},
        {"body": png_bytes(), "map_size": b"32x16", "normalize": b"false"},
        {"body": png_bytes(), "logits_only": b"true"},
    ]
    (several, _), (raw, _), (logits_only, _) = run(handler, model_dir, rows)
    assert [m.method for m in several.maps] == ["gradcam", "layercam", "eigencam"]
    assert all(m.target_class == 0 for m in several.maps)
    [raw_map] = raw.maps
    assert (raw_map.height, raw_map.width, raw_map.normalized) == (32, 16, False)
    assert decode_map(raw_map).max() <= raw_map.raw_max + 1e-3
    assert logits_only.maps == [] and len(logits_only.logits) == 2
    assert logits_only.logits == several.logits


def test_batch_items_equal_single_items(handler, model_dir) -> None:
    rows = [{"body": png_bytes(seed=s), "target": t} for s, t in ((1, b"1"), (2, b"0"))]
    batched = run(handler, model_dir, rows)
    for row, (result, _) in zip(rows, batched, strict=True):
        [(alone, _)] = run(handler, model_dir, [row])
        np.testing.assert_allclose(result.logits, alone.logits, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(decode_map(result.maps[0]), decode_map(alone.maps[0]), atol=2e-3)


def truncated_dicom() -> bytes:
    data = make_dicom(np.zeros((64, 64), dtype=np.uint16), bits_stored=12)
    return data[: len(data) // 2]


BAD_INPUTS = {
    "empty body": ({"body": b""}, "empty", 400),
    "no body at all": ({}, "empty", 400),
    "not an image": (
        {"body": b"hello, this is not an image" * 10},
        "not a PNG, JPEG or DICOM",
        400,
    ),
    "truncated DICOM": ({"body": truncated_dicom()}, "DICOM", 400),
    "zero-sized image": ({"body": raw_png(0, 8, b"")}, "zero-sized", 400),
    "over the pixel cap": ({"body": png_bytes(1200, 1000)}, "pixel", 413),
    "decompression bomb": ({"body": all_zero_png(20_000, 20_000)}, "pixel", 413),
    "unknown method": ({"body": png_bytes(), "methods": b"scorecam"}, "scorecam", 400),
    "unknown target": ({"body": png_bytes(), "target": b"7"}, "target", 400),
    "unknown option": ({"body": png_bytes(), "metods": b"gradcam"}, "metods", 400),
    "bad map size": ({"body": png_bytes(), "map_size": b"0x5"}, "map_size", 400),
    "png of raw map": (
        {"body": png_bytes(), "map_encoding": b"png", "normalize": b"false"},
        "normalized",
        400,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_alone_gets_an_error_status(handler, model_dir, case) -> None:
    row, fragment, http = BAD_INPUTS[case]
    [(result, status)] = run(handler, model_dir, [row])
    assert result.status.code != Code.OK
    assert status == http == result.status.http_status
    assert fragment.lower() in result.status.message.lower()
    assert result.model == "resnet18-test" and list(result.maps) == []


def test_bad_inputs_mixed_into_a_batch_leave_good_items_intact(handler, model_dir) -> None:
    good = {"body": png_bytes(seed=5), "methods": b"gradcam,hirescam"}
    [(alone, _)] = run(handler, model_dir, [good])
    rows = []
    for row, _, _ in BAD_INPUTS.values():
        rows += [row, good]
    results = run(handler, model_dir, rows)
    for i, (result, status) in enumerate(results):
        if i % 2:
            assert status == 200 and result.status.code == Code.OK
            assert result.timings.batch_size == len(rows)
            np.testing.assert_allclose(result.logits, alone.logits, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(
                decode_map(result.maps[1]), decode_map(alone.maps[1]), atol=2e-3
            )
        else:
            assert status >= 400 and result.status.code != Code.OK
    # and the worker keeps serving afterwards
    [(after, status)] = run(handler, model_dir, [good])
    assert status == 200 and after.logits == alone.logits


def test_describe_returns_the_model_metadata(handler, model_dir) -> None:
    context = make_context(model_dir, 1, headers={"describe": "True"})
    [described] = handler.handle([{"body": b""}], context)
    meta = json.loads(described)
    assert meta["architecture"] == "resnet18" and meta["input_size"] == SIZE
    assert meta["depth"] == 18 and meta["params"] > 10_000_000 and meta["flops"] > 0
    assert meta["trained"] is False and meta["threshold"] == pytest.approx(0.4)
    assert meta["methods"][0] == "gradcam" and "gradcam++" in meta["methods"]  # every one served


def test_weights_that_do_not_fit_name_file_and_architecture(model_dir, tmp_path) -> None:
    import shutil

    from ptxplain.errors import WeightsError

    shutil.copy(model_dir / META_FILENAME, tmp_path / META_FILENAME)
    save_weights(get_spec("resnet34").build(SIZE), tmp_path / "weights.safetensors")
    with pytest.raises(WeightsError, match=r"weights\.safetensors.*resnet18"):
        PtxplainHandler().initialize(make_context(tmp_path, 1))
    (tmp_path / "weights.safetensors").unlink()
    with pytest.raises(WeightsError, match="does not exist"):
        PtxplainHandler().initialize(make_context(tmp_path, 1))


def _digest_of(body: bytes) -> bytes:
    from ptxplain.imaging.decode import DecodeLimits, decode_image
    from ptxplain.imaging.digest import pixel_digest

    return pixel_digest(decode_image(body, limits=DecodeLimits()).pixels)


def test_an_image_among_the_training_digests_is_flagged_seen(model_dir, tmp_path) -> None:
    import dataclasses
    import shutil

    from ptxplain.imaging.digest import DIGESTS_FILENAME, file_sha256, write_digests

    shutil.copy(model_dir / "weights.safetensors", tmp_path / "weights.safetensors")
    trained_on, validated_on = png_bytes(80, 60, seed=1), make_dicom(np.full((8, 8), 9, np.uint8))
    digests = write_digests(
        tmp_path / DIGESTS_FILENAME, [_digest_of(trained_on)], [_digest_of(validated_on)]
    )
    meta = ModelMeta.read(model_dir / META_FILENAME)
    meta = dataclasses.replace(
        meta, training_digests=2, training_digests_sha256=file_sha256(digests)
    )
    meta.write(tmp_path / META_FILENAME)
    service = PtxplainHandler()
    service.initialize(make_context(tmp_path, 1))
    rows = [{"body": trained_on}, {"body": png_bytes(80, 60, seed=2)}, {"body": validated_on}]
    flags = [(r.seen_in_training, r.status.code) for r, _ in run(service, tmp_path, rows)]
    assert flags == [(True, Code.OK), (False, Code.OK), (True, Code.OK)]
    [described] = service.handle([{"body": b""}], make_context(tmp_path, 1, {"describe": "True"}))
    assert json.loads(described)["training_digests"] == 2


def test_no_digest_file_checks_nothing_and_a_wrong_one_stops_loading(
    handler, model_dir, tmp_path
) -> None:
    import dataclasses
    import shutil

    from ptxplain.errors import WeightsError
    from ptxplain.imaging.digest import DIGESTS_FILENAME, write_digests

    [(result, _)] = run(handler, model_dir, [{"body": png_bytes(80, 60, seed=1)}])
    assert result.seen_in_training is False
    [described] = handler.handle([{"body": b""}], make_context(model_dir, 1, {"describe": "True"}))
    assert json.loads(described)["training_digests"] == 0
    for name in ("weights.safetensors", META_FILENAME):
        shutil.copy(model_dir / name, tmp_path / name)
    meta = ModelMeta.read(model_dir / META_FILENAME)
    dataclasses.replace(meta, training_digests_sha256="0" * 64).write(tmp_path / META_FILENAME)
    write_digests(tmp_path / DIGESTS_FILENAME, [_digest_of(png_bytes())], [])
    with pytest.raises(WeightsError, match=r"train-digests\.bin is not the digest file"):
        PtxplainHandler().initialize(make_context(tmp_path, 1))


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"decode_cache_mb": -1}, "decode_cache_mb must be at least 0"),
        ({"cpu_slice_ms": -5}, "cpu_slice_ms must be at least 0"),
        ({"cpu_slice_ms": 101}, "at most 100"),
        ({"keep_freed_mb": -1}, "keep_freed_mb must be at least 0"),
        ({"torch_threads": 0}, "torch_threads must be at least 1"),
        ({"decode_cache": 1}, "unknown handler setting"),
        ({"engines_at_once": "many"}, "engines_at_once is 'auto' or a count, got 'many'"),
        ({"engines_at_once": -1}, "engines_at_once is 0 .no limit. .. 4096, got -1"),
    ],
)
def test_handler_settings_out_of_range_are_named(settings, problem) -> None:
    with pytest.raises(ConfigError, match=problem):
        HandlerConfig.from_mapping(settings)


def test_zero_turns_sharing_the_slice_and_kept_memory_off() -> None:
    config = HandlerConfig.from_mapping(
        {"decode_cache_mb": 0, "cpu_slice_ms": 0, "keep_freed_mb": 0}
    )
    assert (config.decode_cache_mb, config.cpu_slice_ms, config.keep_freed_mb) == (0, 0, 0)
    default = HandlerConfig()
    assert (default.decode_cache_mb, default.cpu_slice_ms, default.keep_freed_mb) == (256, 20, 1024)


def test_engines_at_once_is_auto_by_default_and_zero_is_no_limit(model_dir) -> None:
    assert HandlerConfig().engines_at_once is None
    assert HandlerConfig.from_mapping({"engines_at_once": "auto"}).engines_at_once is None
    assert HandlerConfig.from_mapping({"engines_at_once": 0}).engines_at_once == 0
    auto, off = PtxplainHandler(), PtxplainHandler()
    auto.initialize(make_context(model_dir, 1))
    off.initialize(make_context(model_dir, 1, engines_at_once=0))
    assert auto.gate.enabled and auto.gate.slots == cpu_cores()
    assert json.loads(auto.describe_handle())["engines_at_once"] == cpu_cores()
    assert not off.gate.enabled and json.loads(off.describe_handle())["engines_at_once"] == 0


@pytest.fixture
def own_host(tmp_path, monkeypatch) -> Iterator[Path]:
    """Workers made in the test share decodes and a gate of its own (removed afterwards)."""
    folder = tmp_path / "shared"
    monkeypatch.setenv(ENV_DIR, str(folder))
    yield folder
    remove_gates(str(folder))


def test_a_batch_waits_for_a_free_core_and_says_how_long(model_dir, own_host) -> None:
    """Another worker of the host holds the only core: the batch waits, its result says how
    long (core_wait_ms), and forward_cam_ms is the forward alone."""
    service = PtxplainHandler()
    service.initialize(make_context(model_dir, 1, engines_at_once=1))
    [(free, _)] = run(service, model_dir, [{"data": png_bytes()}])
    assert free.status.code == 0 and free.timings.core_wait_ms < 200
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_CORE, service.gate.scope],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "holding"
        [(waited, _)] = run(service, model_dir, [{"data": png_bytes()}])
    finally:
        other.wait(timeout=30)
    assert waited.status.code == 0 and list(waited.logits) == list(free.logits)
    assert 300 <= waited.timings.core_wait_ms < 5000
    assert waited.timings.forward_cam_ms < waited.timings.core_wait_ms
    # The CPU of the forward + CAM is counted, the wait's is not (one torch thread: CPU <= wall).
    for timings in (free.timings, waited.timings):
        assert 0 < timings.forward_cam_cpu_ms <= timings.forward_cam_ms + 5
    assert waited.timings.forward_cam_cpu_ms < waited.timings.core_wait_ms / 2


HOLD_THE_CORE = """
import sys, time
from ptxplain.machine import EngineGate
with EngineGate(sys.argv[1], 1).hold():
    print("holding", flush=True)
    time.sleep(0.6)
"""


def test_two_models_on_one_host_decode_an_image_once(model_dir, own_host) -> None:
    """Two handlers (two workers) share a folder: the second reads the first's decode and
    answers exactly as a handler that decodes alone."""
    first, second, alone = PtxplainHandler(), PtxplainHandler(), PtxplainHandler()
    first.initialize(make_context(model_dir, 1))
    second.initialize(make_context(model_dir, 1))
    alone.initialize(make_context(model_dir, 1, decode_cache_mb=0))
    assert first.decoder.enabled and not alone.decoder.enabled
    image = make_dicom(np.random.default_rng(7).integers(0, 4095, (90, 70), dtype=np.uint16))
    rows = [{"data": image, "map_encoding": b"float32"}]
    [(a, _)] = run(first, model_dir, rows)
    [(b, _)] = run(second, model_dir, rows)
    [(c, _)] = run(alone, model_dir, rows)
    assert (a.timings.decode_shared, b.timings.decode_shared, c.timings.decode_shared) == (
        False,
        True,
        False,
    )
    assert second.decoder.decodes == 0 and alone.decoder.decodes == 1
    for result in (a, b):
        assert list(result.logits) == list(c.logits)
        np.testing.assert_array_equal(decode_map(result.maps[0]), decode_map(c.maps[0]))
