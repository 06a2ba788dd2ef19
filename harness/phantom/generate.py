"""A synthetic chest radiograph set in the SIIM-ACR layout, deterministic from a seed.

``generate_phantom(config, out)`` writes::

    out/dicom-images-train/<study>/<series>/<SOPInstanceUID>.dcm
    out/train-rle.csv          stage-1 relative RLE, header "ImageId, EncodedPixels"
    out/phantom-truth.json     config and per-image lesion / confounder parameters

and returns the generator's truth (labels and masks) for round-trip tests. Anatomy is in
:mod:`harness.phantom.anatomy`, the pneumothorax and the chest-drain confounder in
:mod:`harness.phantom.lesion`; docs/phantom.md has the distributions. Same config -> the same
bytes: every image draws from its own ``SeedSequence(seed, spawn_key=(...))`` stream.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from harness.data.dicom_io import (
    DicomIdentity,
    build_radiograph,
    can_encode,
    derived_uid,
    write_dicom,
)
from harness.data.rle import RleEncoding, encode
from harness.phantom.anatomy import Anatomy, draw_anatomy, sample_geometry
from harness.phantom.lesion import LesionSpec, apply_lesion, chest_tube, sample_lesion
from harness.phantom.siim_shapes import ShapeBank, fit_to_lung, load_bank
from ptxplain.errors import InvalidOptionError

__all__ = [
    "BITS_STORED",
    "CSV_NAME",
    "TRUTH_NAME",
    "PhantomCase",
    "PhantomConfig",
    "PhantomResult",
    "generate_phantom",
    "plan_cases",
    "render_case",
    "render_case_with_drain",
]

BITS_STORED = 12
CSV_NAME = "train-rle.csv"
TRUTH_NAME = "phantom-truth.json"
_MONOCHROME1_FRACTION = 0.1
_MAX_DRAWS = 20
_IMAGES_PER_PATIENT = ((1, 2, 3), (0.6, 0.25, 0.15))


@dataclasses.dataclass(frozen=True)
class PhantomConfig:
    n: int
    seed: int
    size: int = 256
    positive_fraction: float = 0.5
    confounder_fraction: float = 0.0
    compressed_fraction: float = 0.3
    # share of negatives with a drain too (0: the drain marks positives only)
    negative_confounder_fraction: float = 0.0
    lesion_contrast: float = 1.0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise InvalidOptionError(f"--n must be >= 1, got {self.n}")
        if not 64 <= self.size <= 2048:
            raise InvalidOptionError(f"--size must be in 64..2048, got {self.size}")
        for name in (
            "positive_fraction",
            "confounder_fraction",
            "compressed_fraction",
            "negative_confounder_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                flag = "--" + name.replace("_", "-")
                raise InvalidOptionError(f"{flag} must be in [0, 1], got {value}")
        if not 0.0 < self.lesion_contrast <= 10.0:
            raise InvalidOptionError(
                f"--lesion-contrast must be in (0, 10], got {self.lesion_contrast}"
            )


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one image will be (decided up front from the master generator)."""

    index: int
    patient: int
    positive: bool
    tube: bool
    syntax: UID
    monochrome1: bool


@dataclasses.dataclass(frozen=True)
class PhantomCase:
    """The generator's truth for one image."""

    image_id: str
    path: Path
    label: int
    mask: np.ndarray = dataclasses.field(repr=False)
    lesions: tuple[LesionSpec, ...]
    tube: bool
    transfer_syntax: str
    monochrome1: bool


@dataclasses.dataclass(frozen=True)
class PhantomResult:
    config: PhantomConfig
    cases: tuple[PhantomCase, ...]
    csv_path: Path


def _chosen(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """A bool vector with exactly round(n * fraction) True entries at random places."""
    chosen = np.zeros(n, dtype=bool)
    chosen[rng.permutation(n)[: round(n * fraction)]] = True
    return chosen


def _patients(rng: np.random.Generator, n: int) -> np.ndarray:
    counts, weights = _IMAGES_PER_PATIENT
    per_patient = rng.choice(counts, size=n, p=weights)
    return np.repeat(np.arange(n), per_patient)[:n]


def _syntaxes(rng: np.random.Generator, config: PhantomConfig) -> list[UID]:
    compressed = np.flatnonzero(_chosen(rng, config.n, config.compressed_fraction))
    kinds = [RLELossless, JPEG2000Lossless] if can_encode(JPEG2000Lossless) else [RLELossless]
    syntaxes = [ExplicitVRLittleEndian] * config.n
    for k, index in enumerate(compressed):
        syntaxes[index] = kinds[k % len(kinds)]
    return syntaxes


def plan_cases(config: PhantomConfig) -> list[_Plan]:
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0,)))
    positive = _chosen(rng, config.n, config.positive_fraction)
    tube = np.zeros(config.n, dtype=bool)
    tube[positive] = _chosen(rng, int(positive.sum()), config.confounder_fraction)
    patients, syntaxes = _patients(rng, config.n), _syntaxes(rng, config)
    mono1 = _chosen(rng, config.n, _MONOCHROME1_FRACTION)
    if config.negative_confounder_fraction > 0:  # drawn last: other configs keep their draws
        tube[~positive] = _chosen(rng, int((~positive).sum()), config.negative_confounder_fraction)
    return [
        _Plan(
            i,
            int(patients[i]),
            bool(positive[i]),
            bool(tube[i]),
            syntaxes[i],
            bool(mono1[i]),
        )
        for i in range(config.n)
    ]


def _rng(config: PhantomConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=key))


def _expose(rng: np.random.Generator, attenuation: np.ndarray) -> np.ndarray:
    """Detector response: random gain, offset, gamma, a heel-effect ramp and noise."""
    size = attenuation.shape[0]
    gain, offset, gamma = rng.uniform(0.75, 1.3), rng.uniform(-0.04, 0.14), rng.uniform(0.8, 1.25)
    axis = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = rng.uniform(0.0, 0.08) * (np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None])
    noise = rng.standard_normal(attenuation.shape).astype(np.float32) * rng.uniform(0.004, 0.015)
    image = offset + gain * np.clip(attenuation, 0.0, None) ** gamma + ramp + noise
    return np.clip(image, 0.0, 1.0)


def _draw_pneumothorax(
    rng: np.random.Generator, config: PhantomConfig, anatomy: Anatomy, bank: ShapeBank
) -> tuple[Anatomy, list[np.ndarray], list[LesionSpec]]:
    """One real SIIM-ACR mask (drawn at random) fitted into the lungs, one region per side; a
    mask too small to leave a pixel at this size is replaced by another draw."""
    for _ in range(_MAX_DRAWS):
        index = int(rng.integers(len(bank)))
        drawn, regions, lesions = anatomy, [], []
        for part in bank.sides[index]:
            region, growth = fit_to_lung(part, anatomy.lung_labels == part.side)
            if not region.any():
                continue
            spec = sample_lesion(
                rng,
                side=part.side,
                source=bank.ids[index],
                source_area=round(part.area, 6),
                scale=config.lesion_contrast,
            )
            spec = dataclasses.replace(spec, growth=round(growth, 3))
            drawn = apply_lesion(drawn, spec, region)
            regions.append(region)
            lesions.append(spec)
        if regions:
            return drawn, regions, lesions
    raise InvalidOptionError(f"--size {config.size}: no SIIM-ACR mask left a lesion pixel")


def render_case(
    config: PhantomConfig, plan: _Plan
) -> tuple[np.ndarray, list[np.ndarray], list[LesionSpec]]:
    """One image: (uint16 display pixels, one bool mask per lesion, lesions drawn)."""
    pixels, regions, lesions, _ = render_case_with_drain(config, plan)
    return pixels, regions, lesions


def render_case_with_drain(
    config: PhantomConfig, plan: _Plan
) -> tuple[np.ndarray, list[np.ndarray], list[LesionSpec], np.ndarray]:
    """:func:`render_case` and the drain's opacity map (all zeros without a drain)."""
    rng = _rng(config, 1, plan.index)
    geometry = sample_geometry(_rng(config, 2, plan.patient), rng, config.size)
    anatomy = draw_anatomy(rng, geometry)
    regions: list[np.ndarray] = []
    lesions: list[LesionSpec] = []
    if plan.positive:
        anatomy, regions, lesions = _draw_pneumothorax(rng, config, anatomy, load_bank())
    mask = np.logical_or.reduce(regions) if regions else np.zeros(anatomy.lungs.shape, dtype=bool)
    attenuation = anatomy.base + anatomy.markings
    drain = np.zeros(mask.shape, dtype=np.float32)
    if plan.tube:
        side = lesions[0].side if lesions else int(rng.integers(1, 3))
        drain = chest_tube(rng, anatomy, side, mask)
        attenuation = attenuation + 0.3 * drain
    image = _expose(rng, attenuation)
    pixels = np.rint(image * ((1 << BITS_STORED) - 1)).astype(np.uint16)
    return pixels, regions, lesions, drain


def _identity(config: PhantomConfig, plan: _Plan) -> DicomIdentity:
    rng = _rng(config, 3, plan.patient)
    born = f"{int(rng.integers(1935, 2006))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    study = derived_uid("ptxplain-phantom", config.seed, plan.index, "study")
    return DicomIdentity(
        patient_id=f"PHANTOM-{config.seed}-{plan.patient:05d}",
        patient_name=f"Phantom^Patient{plan.patient:05d}",
        birth_date=born,
        sex=str(rng.choice(["F", "M"])),
        study_uid=study,
        series_uid=derived_uid(study, "series"),
        sop_uid=derived_uid(study, "image"),
        study_date="20200101",
    )


def _write_case(config: PhantomConfig, plan: _Plan, out: Path) -> tuple[PhantomCase, list[str]]:
    pixels, regions, lesions = render_case(config, plan)
    mask = np.logical_or.reduce(regions) if regions else np.zeros(pixels.shape, dtype=bool)
    who = _identity(config, plan)
    relative = Path("dicom-images-train", who.study_uid, who.series_uid, f"{who.sop_uid}.dcm")
    ds = build_radiograph(pixels, who, bits_stored=BITS_STORED, monochrome1=plan.monochrome1)
    write_dicom(out / relative, ds, plan.syntax)
    case = PhantomCase(
        who.sop_uid,
        relative,
        int(bool(lesions)),
        mask,
        tuple(lesions),
        plan.tube,
        str(plan.syntax),
        plan.monochrome1,
    )
    return case, _csv_rows(case.image_id, regions)


def _csv_rows(image_id: str, regions: list[np.ndarray]) -> list[str]:
    """One row per lesion region (bilateral -> two rows), ``-1`` for a negative."""
    if not regions:
        return [f"{image_id}, -1"]
    return [f"{image_id}, {encode(region, RleEncoding.RELATIVE)}" for region in regions]


def _truth_json(result_config: PhantomConfig, cases: list[PhantomCase]) -> str:
    entries = [
        {
            "image_id": c.image_id,
            "label": c.label,
            "mask_pixels": int(c.mask.sum()),
            "tube": c.tube,
            "transfer_syntax": c.transfer_syntax,
            "monochrome1": c.monochrome1,
            "lesions": [dataclasses.asdict(lesion) for lesion in c.lesions],
        }
        for c in cases
    ]
    return json.dumps({"config": dataclasses.asdict(result_config), "images": entries}, indent=1)


def generate_phantom(
    config: PhantomConfig,
    out: Path,
    *,
    wrap: Callable[[Iterable[_Plan]], Iterable[_Plan]] = lambda plans: plans,
) -> PhantomResult:
    """Write the phantom set into ``out`` (which must be missing or empty)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidOptionError(f"--out {out}: exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    cases, lines = [], ["ImageId, EncodedPixels"]
    for plan in wrap(plan_cases(config)):
        case, rows = _write_case(config, plan, out)
        cases.append(case)
        lines.extend(rows)
    (out / CSV_NAME).write_text("\n".join(lines) + "\n", encoding="ascii")
    (out / TRUTH_NAME).write_text(_truth_json(config, cases) + "\n", encoding="utf-8")
    return PhantomResult(config, tuple(cases), out / CSV_NAME)
