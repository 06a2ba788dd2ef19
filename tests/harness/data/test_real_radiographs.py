"""A real chest radiograph end to end: pydicom-data's RG1 PA chest CR (1955 x 1841, MONOCHROME1,
15 bits stored, VOI window 15000 / 30000) uncompressed, as lossless JPEG 2000 and as lossy
JPEG 2000. The harness's reader decodes the lossless pair identically, and the real TorchServe
answers both with identical logits for every architecture family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from harness.data.dicom_io import read_header, read_image_pixels
from ptxplain.explain.options import ExplainOptions
from services.torchserve import rest_client
from tests.conftest import LiveTorchServe

NAMES = ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm")


def _file(name: str) -> Path:
    found = get_testdata_file(name)
    assert found, f"pydicom-data lacks {name}"
    return Path(str(found))


def test_the_harness_reads_the_lossless_pair_identically() -> None:
    uncompressed, lossless, lossy = (read_image_pixels(_file(n)) for n in NAMES)
    assert uncompressed.shape == (1955, 1841) and read_header(_file(NAMES[0])).rows == 1955
    assert np.array_equal(uncompressed, lossless)
    assert 0.0 < float(np.abs(uncompressed - lossy).mean()) < 0.01
    # MONOCHROME1 inverted to bright = dense: the lung fields (upper middle) are darker than
    # the mediastinum between them
    lungs = uncompressed[500:900, [450, 1390]].mean()
    assert lungs < uncompressed[500:900, 920].mean()


@pytest.mark.live
def test_served_end_to_end_with_identical_logits_for_lossless(torchserve: LiveTorchServe) -> None:
    bodies = {n: _file(n).read_bytes() for n in NAMES}
    with rest_client(torchserve.config, timeout_s=120) as client:
        for model in torchserve.models:
            results = {
                n: client.predict(model, b, ExplainOptions()).result for n, b in bodies.items()
            }
            for name, result in results.items():
                assert result.status.code == 0, f"{model} {name}: {result.status.message}"
                assert np.isfinite(result.logits).all()
            assert results[NAMES[0]].logits == results[NAMES[1]].logits, model
            assert np.allclose(results[NAMES[0]].logits, results[NAMES[2]].logits, atol=0.05)
