"""Phantom: determinism, reader round trip, lesion and confounder geometry, and that global
intensity statistics cannot solve the task."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from harness.data.dataset import ReadOptions
from harness.data.dicom_io import can_encode
from harness.data.layouts import open_dataset
from harness.phantom.anatomy import draw_anatomy, sample_geometry
from harness.phantom.generate import (
    CSV_NAME,
    PhantomConfig,
    PhantomResult,
    generate_phantom,
    plan_cases,
    render_case,
)
from harness.phantom.lesion import apply_lesion, chest_tube, sample_lesion
from harness.phantom.siim_shapes import SideShape, coverage, fit_to_lung, load_bank
from ptxplain.errors import InvalidOptionError
from tests.harness.conftest import PHANTOM_CONFIG


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    config = PhantomConfig(n=6, seed=11, size=64, compressed_fraction=0.5, confounder_fraction=1.0)
    generate_phantom(config, tmp_path / "a")
    generate_phantom(config, tmp_path / "b")
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(first) == 6 + 2 and first == second
    generate_phantom(dataclasses.replace(config, seed=12), tmp_path / "c")
    assert _files(tmp_path / "c")[CSV_NAME] != first[CSV_NAME]


def test_reader_returns_the_generators_labels_and_masks(
    tmp_path: Path, phantom_set: tuple[Path, PhantomResult]
) -> None:
    root, result = phantom_set
    dataset = open_dataset(root, ReadOptions(state_dir=tmp_path))
    assert dataset.summary.skipped == () and dataset.summary.rle_encoding == "relative"
    records = dataset.by_id()
    assert sorted(records) == sorted(c.image_id for c in result.cases)
    for case in result.cases:
        record = records[case.image_id]
        assert int(record.label) == case.label
        assert record.mask_pixels == int(case.mask.sum())
        assert np.array_equal(record.load_mask(), case.mask)
    rows = Counter(line.split(",")[0] for line in (root / CSV_NAME).read_text().splitlines()[1:])
    assert all(rows[c.image_id] == max(1, len(c.lesions)) for c in result.cases)  # one per side


def test_set_composition(phantom_set: tuple[Path, PhantomResult]) -> None:
    _, result = phantom_set
    cases = result.cases
    positives = [c for c in cases if c.label]
    assert len(positives) == 20
    assert sum(c.tube for c in cases) == 10 and all(c.label for c in cases if c.tube)
    syntaxes = Counter(c.transfer_syntax for c in cases)
    assert syntaxes[ExplicitVRLittleEndian] == 20
    if can_encode(JPEG2000Lossless):
        assert syntaxes[RLELossless] == syntaxes[JPEG2000Lossless] == 10
    assert sum(c.monochrome1 for c in cases) == 4
    sizes = sorted(int(c.mask.sum()) for c in positives)
    assert sizes[0] * 10 < sizes[-1], sizes  # small subtle ones and large ones
    assert {lesion.side for c in positives for lesion in c.lesions} == {1, 2}
    bank_ids = set(load_bank().ids)
    assert all(lesion.source in bank_ids for c in positives for lesion in c.lesions)


def test_files_carry_made_up_identity_and_decode_bright_is_dense(
    tmp_path: Path, phantom_set: tuple[Path, PhantomResult]
) -> None:
    root, result = phantom_set
    dataset = open_dataset(root, ReadOptions(state_dir=tmp_path)).by_id()
    for case in result.cases[:12]:
        ds = pydicom.dcmread(root / case.path)
        assert ds.PatientID.startswith("PHANTOM-") and ds.SOPInstanceUID == case.image_id
        assert ds.PhotometricInterpretation == (
            "MONOCHROME1" if case.monochrome1 else "MONOCHROME2"
        )
        pixels = dataset[case.image_id].load_pixels()
        spine, corner = pixels[40:60, 44:52].mean(), pixels[:6, :6].mean()
        assert pixels.dtype == np.float32 and spine > corner + 0.2


def _anatomy(seed: int = 5, size: int = 128):
    rng = np.random.default_rng(seed)
    geometry = sample_geometry(rng, rng, size)
    return rng, geometry, draw_anatomy(rng, geometry)


def _fitted(anatomy, index: int, side: int) -> tuple[SideShape, np.ndarray]:
    bank = load_bank()
    part = next(
        p for parts in bank.sides[index:] for p in parts if p.side == side and p.area > 0.01
    )
    region, _ = fit_to_lung(part, anatomy.lung_labels == side)
    return part, region


def test_lesion_removes_markings_and_has_a_pleural_line_outside_the_mask() -> None:
    rng, _, anatomy = _anatomy()
    assert anatomy.markings[anatomy.lungs].std() > 0.01  # lungs do have markings
    part, region = _fitted(anatomy, 0, 1)
    spec = sample_lesion(rng, side=1, source="x", source_area=part.area, scale=1.0)
    spec = dataclasses.replace(spec, contrast=0.04, line_contrast=0.05)
    drawn = apply_lesion(anatomy, spec, region)
    assert region.sum() >= 20 and not (region & (anatomy.lung_labels != 1)).any()
    assert not drawn.markings[region].any()
    assert (drawn.base[region] < anatomy.base[region]).all()
    ring = ndimage.binary_dilation(region) & (anatomy.lung_labels == 1) & ~region
    assert (drawn.base[ring] > anatomy.base[ring]).all()
    untouched = ndimage.distance_transform_edt(~region) > 4  # line blur reaches 3 px
    assert np.array_equal(drawn.base[untouched], anatomy.base[untouched])


@pytest.mark.parametrize(("index", "side"), [(0, 1), (40, 2), (300, 1)])
def test_a_real_mask_fits_inside_its_lung_with_its_area_kept(index: int, side: int) -> None:
    _, _, anatomy = _anatomy(seed=6)
    part, region = _fitted(anatomy, index, side)
    assert not (region & (anatomy.lung_labels != side)).any()
    assert int(region.sum()) == round(part.area * region.size)
    assert ndimage.label(region)[1] <= 4  # a shape, not scattered pixels


def test_chest_tube_stays_outside_the_mask() -> None:
    rng, _, anatomy = _anatomy(seed=7)
    _, region = _fitted(anatomy, 10, 1)
    tube = chest_tube(rng, anatomy, 1, region)
    assert tube.sum() > 20 and not (tube > 0)[region].any()


def test_reference_hemithoraces_hold_the_real_masks() -> None:
    """The constants that place real masks in the phantom's lungs hold >= 96 % of all SIIM-ACR
    mask pixels of their side."""
    assert coverage(1) >= 0.96 and coverage(2) >= 0.96


SIIM_AREA_QUARTILES = np.array([0.39, 0.82, 1.75])  # % of the image (stage-1 training masks)


def test_lesion_areas_follow_siim_acr() -> None:
    """Each quartile of the lesion area (share of the image) within 15 % of SIIM-ACR's, large
    lesions included, bilateral ones present, and lesions in the upper lung like real ones."""
    config = PhantomConfig(n=900, seed=0, size=96)
    areas, bilateral, upper = [], 0, 0
    for plan in plan_cases(config):
        if not plan.positive:
            continue
        _, regions, lesions = render_case(config, plan)
        mask = np.logical_or.reduce(regions)
        areas.append(mask.mean() * 100)
        bilateral += len(lesions) == 2
        rows = np.nonzero(mask)[0]
        upper += rows.mean() < 0.5 * config.size
    quartiles = np.quantile(areas, [0.25, 0.5, 0.75])
    assert np.all(np.abs(quartiles / SIIM_AREA_QUARTILES - 1) <= 0.15), quartiles
    assert max(areas) > 5.0 and np.mean(np.array(areas) > 5.0) > 0.02
    assert 0.05 < bilateral / len(areas) < 0.3
    assert upper / len(areas) > 0.6


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("n", 0, "--n"),
        ("size", 32, "--size"),
        ("positive_fraction", 1.5, "--positive-fraction"),
        ("compressed_fraction", -0.1, "--compressed-fraction"),
        ("lesion_contrast", 0.0, "--lesion-contrast"),
    ],
)
def test_bad_options_name_the_flag(field: str, value: float, flag: str) -> None:
    with pytest.raises(InvalidOptionError, match=flag):
        dataclasses.replace(PHANTOM_CONFIG, **{field: value})


def test_refuses_a_non_empty_out_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(InvalidOptionError, match="not an empty folder"):
        generate_phantom(PhantomConfig(n=1, seed=0, size=64), tmp_path)


def _histogram_auroc(features: np.ndarray, labels: np.ndarray) -> float:
    half = len(labels) // 2
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(features[:half], labels[:half])
    return float(roc_auc_score(labels[half:], model.predict_proba(features[half:])[:, 1]))


def test_global_intensity_histogram_cannot_solve_the_task(tmp_path: Path) -> None:
    """Logistic regression on a 32-bin histogram of the decoded image: AUROC <= 0.6.

    The positive control (positives 0.08 brighter overall, on a [0, 1] scale) shows the same
    baseline does find a global intensity difference of that size, so the assertion can fail.
    """
    generate_phantom(PhantomConfig(n=240, seed=0, size=128), tmp_path / "p")
    dataset = open_dataset(tmp_path / "p", ReadOptions(state_dir=tmp_path))
    pixels = [r.load_pixels() for r in dataset.records]
    labels = np.array([int(r.label) for r in dataset.records])

    def histograms(shift: float) -> np.ndarray:
        return np.array(
            [
                np.histogram(np.clip(p + shift * y, 0, 1), bins=32, range=(0, 1))[0] / p.size
                for p, y in zip(pixels, labels, strict=True)
            ]
        )

    assert _histogram_auroc(histograms(0.0), labels) <= 0.6
    assert _histogram_auroc(histograms(0.08), labels) > 0.85


def test_drains_on_negatives_leave_every_other_draw_alone() -> None:
    from harness.phantom.generate import plan_cases, render_case_with_drain

    base = PhantomConfig(n=40, seed=3, size=64, confounder_fraction=0.5)
    mixed = dataclasses.replace(base, negative_confounder_fraction=0.5)
    plans, mixed_plans = plan_cases(base), plan_cases(mixed)
    assert not any(p.tube for p in plans if not p.positive)
    negatives = [p for p in mixed_plans if not p.positive]
    assert sum(p.tube for p in negatives) == round(len(negatives) * 0.5)
    for a, b in zip(plans, mixed_plans, strict=True):
        assert dataclasses.replace(b, tube=a.tube) == a  # only the drains on negatives differ
    drained = next(p for p in negatives if p.tube)
    _, regions, lesions, drain = render_case_with_drain(mixed, drained)
    assert not regions and not lesions and drain.max() > 0.5  # a drain, no lesion
