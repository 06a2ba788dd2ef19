"""The live fuzz suite: hostile inputs of every class over gRPC and HTTP against the session's
real TorchServe behind a real gateway. Each must get a client error naming the problem, or a
documented success; never INTERNAL / UNKNOWN / UNAVAILABLE / 5xx, and never a dead worker
(every model's worker pids are the same after each test).

hypothesis draws the bytes, cuts, flips and option values; the examples per test are few and
the per-test deadline off (the servers are real and the CPU shared), so the file stays within
a couple of minutes. The tallies per class are printed at the end of the run (and written to
``$PTXPLAIN_FUZZ_REPORT`` when set)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset

from ptxplain.v1 import explainer_pb2 as epb
from tests.conftest import LiveTorchServe
from tests.factories.dicom_factory import dicom_bytes, image_dataset, make_dicom, phantom
from tests.factories.image_factory import all_zero_png, pillow_bytes
from tests.gateway.conftest import LoopThread
from tests.gateway.hostile import HostileStack, hostile_stack, png

pytestmark = pytest.mark.live
FEW = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TWO = ("resnet18", "vit_s16")
MAGICS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x00" * 128 + b"DICM"]
HOSTILE_TEXT = [
    "²",
    "gradcamé",
    "١",
    "-0",
    "1e3",
    "9" * 5000,
    "\x00",
    ",,,",
    "0x10",
    " 1 ",
    "1x",
    "x1",
    "64x",
    "99999999999x1",
    "\u202e",
    "😀" * 50,
    "%00",
    "a" * 70000,
]
hostile_text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40))


@pytest.fixture(scope="module")
def stack(torchserve: LiveTorchServe, loop_thread: LoopThread) -> Iterator[HostileStack]:
    yield from hostile_stack(torchserve, loop_thread)


@pytest.fixture(autouse=True)
def _workers_survive(stack: HostileStack) -> Iterator[None]:
    yield
    stack.assert_no_worker_died()
    response, _ = stack.client.explain(png(), list(TWO), timeout_s=60)
    assert {r.status.code for r in response.results} == {0}, "a good image failed afterwards"


def _valid_images() -> list[bytes]:
    rgb = np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    return [
        png(),
        pillow_bytes(Image.fromarray(rgb), "JPEG"),
        make_dicom(phantom().astype(np.uint16)),
    ]


VALID = _valid_images()


# -- bytes ------------------------------------------------------------------------------------


@FEW
@given(prefix=st.sampled_from(MAGICS), tail=st.binary(max_size=2048))
def test_raw_bytes(stack: HostileStack, prefix: bytes, tail: bytes) -> None:
    stack.grpc_call("raw bytes", prefix + tail)
    stack.http_call("raw bytes", prefix + tail)


@FEW
@given(which=st.integers(0, len(VALID) - 1), cut=st.floats(0.0, 0.99))
def test_truncated_images(stack: HostileStack, which: int, cut: float) -> None:
    image = VALID[which]
    truncated = image[: int(len(image) * cut)]
    stack.grpc_call("truncated image", truncated, TWO)
    stack.http_call("truncated image", truncated)


@FEW
@given(
    which=st.integers(0, len(VALID) - 1),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_corrupt_images(stack: HostileStack, which: int, flips: list[tuple[float, int]]) -> None:
    image = bytearray(VALID[which])
    for where, value in flips:
        image[min(int(where * len(image)), len(image) - 1)] = value
    stack.grpc_call("corrupt image", bytes(image), TWO)


def _exotic() -> list[bytes]:
    rgba = np.random.default_rng(2).integers(0, 255, (30, 20, 4), dtype=np.uint8)
    cmyk = Image.fromarray(rgba[..., :3]).convert("CMYK")
    palette = Image.fromarray(rgba[..., 0]).convert("P")
    return [
        png(mode="I;16"),
        pillow_bytes(Image.fromarray(rgba), "PNG"),
        pillow_bytes(palette, "PNG"),
        pillow_bytes(cmyk, "JPEG"),
        pillow_bytes(Image.fromarray(rgba[..., 0]), "JPEG", progressive=True),
        png(1, 1),
        png(1, 2000),
        png(2000, 3),
        make_dicom((phantom() - 2000).astype(np.int16)),
        make_dicom(np.zeros((2, 40, 40), np.uint16)),
    ]


@pytest.mark.parametrize("index", range(len(_exotic())))
def test_exotic_valid_images(stack: HostileStack, index: int) -> None:
    image = _exotic()[index]
    stack.grpc_call("exotic valid image", image, TWO)
    stack.http_call("exotic valid image", image)


@pytest.mark.parametrize("side", [20_000, 60_000])
def test_decompression_bombs(stack: HostileStack, side: int) -> None:
    bomb = all_zero_png(side, side)
    assert stack.grpc_call("decompression bomb", bomb, TWO) != "OK"
    assert stack.http_call("decompression bomb", bomb) != 200


# -- DICOM attributes -------------------------------------------------------------------------

DICOM_ATTRIBUTES = [
    {"PhotometricInterpretation": "MONOCHRÖME2"},
    {"PhotometricInterpretation": "YBR_FULL"},
    {"PhotometricInterpretation": ""},
    {"Rows": 0},
    {"Columns": 65535},
    {"BitsAllocated": 7},
    {"BitsStored": 40},
    {"HighBit": 99},
    {"SamplesPerPixel": 3},
    {"PixelRepresentation": 5},
    {"NumberOfFrames": 1000},
    {"RescaleSlope": "²"},
    {"RescaleIntercept": "nan"},
    {"RescaleSlope": "1e309"},
    {"WindowCenter": "é"},
    {"WindowWidth": "0"},
    {"VOILUTFunction": "SIGMOÏD"},
    {"PatientName": "Dœ^Jäne" * 500},
    {"PixelData": b"\x00" * 7},
    {"PixelData": b""},
]


def _dicom_with(attributes: dict[str, object]) -> bytes:
    """A DICOM with ``attributes`` set; a value pydicom will not take (a non-number in a DS)
    is written as a placeholder of its byte length and swapped for the raw bytes afterwards."""
    pixels = phantom().astype(np.uint16)
    try:
        return dicom_bytes(image_dataset(pixels, **attributes))
    except (ValueError, OverflowError):
        ((name, value),) = attributes.items()
        raw = str(value).encode("utf-8")
        raw += b" " * (len(raw) % 2)
        placeholder = b"1" * len(raw)
        data = dicom_bytes(image_dataset(pixels, **{name: placeholder.decode()}))
        tag = Dataset()
        setattr(tag, name, placeholder.decode())
        element = tag[name].tag
        start = data.index(element.group.to_bytes(2, "little") + element.elem.to_bytes(2, "little"))
        at = data.index(placeholder, start)
        return data[:at] + raw + data[at + len(raw) :]


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
@pytest.mark.parametrize("attributes", DICOM_ATTRIBUTES, ids=lambda a: next(iter(a)))
def test_dicom_attribute_corrupted_or_non_ascii(
    stack: HostileStack, attributes: dict[str, object]
) -> None:
    image = _dicom_with(attributes)
    stack.grpc_call("DICOM attribute", image, TWO)
    stack.http_call("DICOM attribute", image)


# -- sizes ------------------------------------------------------------------------------------


def test_oversize_bodies(stack: HostileStack) -> None:
    cap = stack.running.gateway.config.max_image_bytes
    over = b"\x89PNG\r\n\x1a\n" + b"\x00" * cap
    assert stack.grpc_call("oversize body", over, TWO) == "INVALID_ARGUMENT"
    far_over = over + b"\x00" * (2 * 1024 * 1024)
    assert stack.grpc_call("oversize body", far_over, TWO, allowed={"RESOURCE_EXHAUSTED"})
    assert stack.http_call("oversize body", over) == 413


# -- options ----------------------------------------------------------------------------------


@FEW
@given(
    methods=st.lists(hostile_text, max_size=3),
    target=hostile_text,
    map_size=hostile_text,
    encoding=st.integers(-3, 9),
    normalize=st.sampled_from([None, True, False]),
)
def test_every_grpc_option_with_hostile_values(
    stack: HostileStack,
    methods: list[str],
    target: str,
    map_size: str,
    encoding: int,
    normalize: bool | None,
) -> None:
    options = epb.ExplainOptions(methods=methods, target=target, map_size=map_size)
    options.map_encoding = encoding  # type: ignore[assignment]
    if normalize is not None:
        options.normalize = normalize
    stack.grpc_call("hostile option", png(), TWO, options)


@FEW
@given(
    key=st.sampled_from(["methods", "target", "map_size", "map_encoding", "normalize", "method"]),
    value=hostile_text,
)
def test_every_http_option_with_hostile_values(stack: HostileStack, key: str, value: str) -> None:
    stack.http_call("hostile option", png(), [("models", "resnet18"), (key, value)])


@pytest.mark.parametrize(
    ("key", "value"),
    [("target", "²"), ("methods", "gradcamé"), ("map_size", "²"), ("methods", ",,,")],
)
def test_the_options_that_once_killed_every_worker(
    stack: HostileStack, key: str, value: str
) -> None:
    options = epb.ExplainOptions(**{key: [value] if key == "methods" else value})
    assert stack.grpc_call("hostile option", png(), TWO, options) != "OK"
    assert stack.http_call("hostile option", png(), {"models": "resnet18", key: value}) == 400


# -- model names ------------------------------------------------------------------------------


@FEW
@given(names=st.lists(st.one_of(hostile_text, st.text(min_size=1, max_size=300)), max_size=5))
def test_model_name_abuse(stack: HostileStack, names: list[str]) -> None:
    stack.grpc_call("model name", png(), names or ["resnet18", "resnet18"])
    stack.http_call("model name", png(), [("models", n) for n in names] or None)


def test_a_64_kib_model_name_comes_back_bounded(stack: HostileStack) -> None:
    assert stack.grpc_call("model name", png(), ["m" * 65536]) == "INVALID_ARGUMENT"
    assert stack.http_call("model name", png(), {"models": "m" * 65536}) == 400


# -- envelopes --------------------------------------------------------------------------------


@FEW
@given(body=st.binary(max_size=512))
def test_bytes_that_are_no_explain_request(stack: HostileStack, body: bytes) -> None:
    stack.raw_grpc("broken envelope", body)


@pytest.mark.parametrize(
    "body",
    [
        b"\x12\x02\xff\xfe",  # models: invalid UTF-8
        b"\x1a\x03\x0a\x01\xff",  # options.methods: invalid UTF-8
        b"\x1a\x05\x0a\x09abc",  # options: a field longer than the message
        b"\x0a\xff\xff\xff\xff\x0f",  # image: a length past the end
        b"\xff" * 16,
    ],
)
def test_broken_grpc_envelopes_are_invalid_argument(stack: HostileStack, body: bytes) -> None:
    assert stack.raw_grpc("broken envelope", body) == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"{", "application/json"),
        (json.dumps({"image": "%%%"}).encode(), "application/json"),
        (json.dumps({"image": 5, "models": "x"}).encode(), "application/json"),
        (
            json.dumps({"image": base64.b64encode(png()).decode(), "extra": 1}).encode(),
            "application/json",
        ),
        (json.dumps([1, 2]).encode(), "application/json"),
        (b"\xff\xfe" * 10, "application/json"),
        (png(), "text/plain"),
        (b"", "image/png"),
    ],
)
def test_broken_http_envelopes(stack: HostileStack, data: bytes, content_type: str) -> None:
    stack.http_call("broken envelope", data, headers={"Content-Type": content_type})


def test_http_refuses_foreign_hosts_and_origins(stack: HostileStack) -> None:
    url = f"{stack.http}/v1/explain?models=resnet18"
    rebound = requests.post(url, data=png(), headers={"Host": "evil.example:80"}, timeout=30)
    assert rebound.status_code == 403 and "allowed_hosts" in rebound.json()["error"]["message"]
    foreign = requests.post(
        url,
        data=png(),
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
        timeout=30,
    )
    assert foreign.status_code == 403
    same = requests.post(url, data=png(), headers={"Origin": stack.http}, timeout=30)
    assert same.status_code == 200
    stack.tally.add("foreign host / origin", "http 403")
    stack.tally.add("foreign host / origin", "http 403")
