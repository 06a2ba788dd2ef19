"""Checks at the edge, before any model is asked: image size and format, options."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ptxplain.errors import (
    Code,
    DecodeError,
    ImageTooLargeError,
    InvalidInputError,
    InvalidOptionError,
)
from ptxplain.explain.options import ExplainOptions
from ptxplain.imaging.decode import sniff_format as handler_sniff
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import result_pb2 as pb
from services.gateway.edge import check_image, handler_inputs, sniff_format
from tests.factories.dicom_factory import make_dicom
from tests.gateway.fakes import png_bytes


def samples() -> list[bytes]:
    dicom = make_dicom(np.zeros((8, 8), dtype=np.uint16))
    return [png_bytes(), b"\xff\xd8\xff\xe0rest", dicom, dicom[132:], b"GIF89a....", b"x" * 200]


EXPECTED: list[str | None] = ["png", "jpeg", "dicom", None, None, None]  # None: refused


@pytest.mark.parametrize("index", range(6))
def test_the_edge_sniffs_with_the_handlers_rule(index: int) -> None:
    data, expected = samples()[index], EXPECTED[index]
    assert sniff_format is handler_sniff  # one rule (ptxplain.image_format), not two copies
    if expected is None:
        with pytest.raises(DecodeError, match="not a PNG, JPEG or DICOM"):
            check_image(data, len(data))
    else:
        assert check_image(data, len(data)) == expected


def test_image_cap_is_exact_and_named() -> None:
    image = png_bytes()
    assert check_image(image, len(image)) == "png"
    with pytest.raises(ImageTooLargeError, match=f"cap of {len(image) - 1} bytes") as info:
        check_image(image, len(image) - 1)
    assert info.value.code == Code.INVALID_ARGUMENT and info.value.http_status == 413
    with pytest.raises(InvalidInputError, match="empty"):
        check_image(b"", 100)


def test_options_become_the_handlers_input_keys() -> None:
    proto = epb.ExplainOptions(
        methods=["gradcam", " hirescam "],
        target="predicted",
        map_size="input",
        map_encoding=pb.MAP_ENCODING_PNG,
        normalize=True,
        logits_only=False,
    )
    inputs = handler_inputs(ExplainOptions.from_proto(proto))
    assert inputs == {
        "methods": b"gradcam,hirescam",
        "target": b"predicted",
        "map_size": b"input",
        "map_encoding": b"png",
        "normalize": b"true",
    }
    assert handler_inputs(ExplainOptions.from_proto(epb.ExplainOptions())) == {}
    with pytest.raises(InvalidOptionError, match="map_encoding"):
        ExplainOptions.from_proto(epb.ExplainOptions(map_encoding=9))  # type: ignore[arg-type]


def test_the_gateway_imports_no_torch_numpy_pillow_or_pydicom() -> None:
    code = (
        "import sys, services.gateway, services.gateway.runner; "
        "print(sorted(m for m in ('torch','numpy','PIL','pydicom','cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
