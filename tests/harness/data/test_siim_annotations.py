"""The project's CSV reader and RLE codec against the real SIIM-ACR annotations.

torchxrayvision ships the challenge's stage-1 training CSV (12,954 rows). Every row is decoded
with this project's reader (multi-row images merged), the published figures are checked, and
masks agree with torchxrayvision's own reader on the same rows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness.data.rle import RleEncoding, decode, spans_to_mask
from harness.data.siim import read_label_csv
from harness.data.siim_annotations import (
    SIIM_SHAPE,
    SiimAnnotations,
    contains,
    mask_geometry,
    packaged_csv,
    read_annotations,
    span_pixels,
)


@pytest.fixture(scope="module")
def annotations() -> SiimAnnotations:
    return read_annotations()


def test_counts_rows_per_image_and_encoding(annotations: SiimAnnotations) -> None:
    assert annotations.rows == 12_954
    assert annotations.images == 12_047
    assert len(annotations.positive_ids) == 2_669
    assert len(annotations.negative_ids) == 12_047 - 2_669
    per_image = Counter(min(n, 5) for n in annotations.regions)
    assert per_image == {1: 2_045, 2: 447, 3: 112, 4: 40, 5: 25}
    assert annotations.encoding.encoding is RleEncoding.RELATIVE
    assert annotations.encoding.absolute_only == 0 and annotations.encoding.relative_only > 3000


def test_every_run_lies_inside_the_image(annotations: SiimAnnotations) -> None:
    n = SIIM_SHAPE[0] * SIIM_SHAPE[1]
    for spans in annotations.spans:
        assert spans.size and (spans[:, 0] >= 0).all() and (spans[:, 1] <= n).all()
        assert (spans[1:, 0] > spans[:-1, 1]).all()  # merged: sorted, disjoint, not touching


def test_area_quantiles_position_and_shape(annotations: SiimAnnotations) -> None:
    geometry = [mask_geometry(s, annotations.shape) for s in annotations.spans]
    area = np.array([g.area for g in geometry]) * 100
    quantiles = np.quantile(area, [0.05, 0.25, 0.5, 0.75, 0.95])
    assert np.round(quantiles, 2).tolist() == [0.13, 0.39, 0.82, 1.75, 4.37]
    assert round(float(area.mean()), 2) == 1.37 and round(float(area.max()), 2) == 15.39
    assert round(float((area > 5).mean()), 2) == 0.04
    assert round(float(np.median([g.centroid_row for g in geometry])), 2) == 0.22  # apical
    assert round(float(np.median([g.bbox_fill for g in geometry])), 2) == 0.24  # thin crescents


def test_merged_spans_equal_the_union_of_each_rows_mask(annotations: SiimAnnotations) -> None:
    table, _ = read_label_csv(annotations.path)
    multi = [i for i, n in zip(annotations.positive_ids, annotations.regions, strict=True) if n > 2]
    by_id = dict(zip(annotations.positive_ids, annotations.spans, strict=True))
    for image_id in multi[:10]:
        rows = table[image_id]
        union = np.logical_or.reduce(
            [decode(r.text, SIIM_SHAPE, RleEncoding.RELATIVE, where="t") for r in rows]
        )
        assert np.array_equal(spans_to_mask(by_id[image_id], SIIM_SHAPE), union)


def test_span_pixels_and_contains_agree_with_the_drawn_mask(annotations: SiimAnnotations) -> None:
    spans = annotations.spans[0]
    mask = spans_to_mask(spans, SIIM_SHAPE)
    assert np.array_equal(np.flatnonzero(mask.ravel(order="F")), span_pixels(spans))
    probe = np.random.default_rng(0).integers(0, mask.size, 50_000)
    assert np.array_equal(contains(spans, probe), mask.ravel(order="F")[probe])


def test_masks_agree_with_torchxrayvisions_reader(
    annotations: SiimAnnotations, tmp_path: Path
) -> None:
    """torchxrayvision's reader draws each row into a fresh mask, so for an image with several
    rows only the last row's region survives; there, ours holds that region and more."""
    import torchxrayvision as xrv  # a declared dependency; imported here as it is slow to load

    peer = xrv.datasets.SIIM_Pneumothorax_Dataset(
        imgpath=str(tmp_path), csvpath=str(packaged_csv())
    )
    table, _ = read_label_csv(annotations.path)
    by_id = dict(zip(annotations.positive_ids, annotations.spans, strict=True))
    single = [
        i for i, n in zip(annotations.positive_ids, annotations.regions, strict=True) if n == 1
    ]
    multi = [i for i, n in zip(annotations.positive_ids, annotations.regions, strict=True) if n > 1]
    for image_id in single[::100] + multi[::40]:
        theirs = peer.get_pathology_mask_dict(image_id, SIIM_SHAPE[0])[0][0] > 0.5
        ours = spans_to_mask(by_id[image_id], SIIM_SHAPE)
        last = decode(table[image_id][-1].text, SIIM_SHAPE, RleEncoding.RELATIVE, where="t")
        assert np.array_equal(theirs, last)
        if len(table[image_id]) == 1:
            assert np.array_equal(theirs, ours)
        else:
            assert (ours >= theirs).all() and ours.sum() > theirs.sum()
