"""Robustness of explanations: map stability under small input perturbations (Spearman rank
correlation and SSIM), the model-randomization sanity check, and agreement between
architectures on the same image.

An *explainer* is any callable ``pixels (H, W) in [0, 1] -> {model: map in original
coordinates}``: :class:`EngineExplainer` runs a model in-process (the randomization check
always does), and the evaluation builds one on the gateway client for stability. Maps are
compared after min-max normalization and block-averaging to at most :data:`COMPARE_SIDE`
pixels on the longer side (a 7x7 or 14x14 CAM carries no finer detail).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from scipy import ndimage
from scipy import stats as sps

from harness.metrics.localization import normalize_map

__all__ = [
    "COMPARE_SIDE",
    "DEFAULT_PERTURBATIONS",
    "ClientExplainer",
    "EngineExplainer",
    "Perturbation",
    "agreement_matrix",
    "engine_pair",
    "layers_from_target",
    "map_spearman",
    "png16",
    "randomization_check",
    "randomize_top_layers",
    "ssim",
    "stability",
]

COMPARE_SIDE = 64
RANDOMIZATION_MAX_SPEARMAN = 0.5
Explainer = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def _downsample(heat: np.ndarray) -> np.ndarray:
    """Block-average so the longer side is at most COMPARE_SIDE, then normalize."""
    factor = max(1, -(-max(heat.shape) // COMPARE_SIDE))
    h, w = (heat.shape[0] // factor) * factor, (heat.shape[1] // factor) * factor
    blocks = heat[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    return normalize_map(blocks)


def map_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps' pixels; NaN when either is constant."""
    ra, rb = sps.rankdata(a.ravel()), sps.rankdata(b.ravel())
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004; ``skimage.metrics.structural_similarity``)
    with a Gaussian window of ``sigma``, averaged over every pixel, border included: the maps
    are mirrored by the window's radius first, so maps smaller than the window work too."""
    from skimage.metrics import structural_similarity

    radius = int(3.5 * sigma + 0.5)  # skimage's window for gaussian_weights (truncate 3.5)
    padded = [np.pad(x.astype(np.float64), radius, mode="symmetric") for x in (a, b)]
    _, full = structural_similarity(
        padded[0],
        padded[1],
        data_range=data_range,
        gaussian_weights=True,
        sigma=sigma,
        use_sample_covariance=False,
        full=True,
    )
    return float(np.mean(full[radius:-radius, radius:-radius]))


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """A small input change; ``shift`` (rows, cols) moves the image, and the map is moved
    back before comparing (the strip the shift exposed is left out)."""

    name: str
    noise_sigma: float = 0.0
    brightness: float = 0.0
    contrast: float = 1.0
    shift: tuple[int, int] = (0, 0)
    seed: int = 0

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        out = pixels.astype(np.float64)
        if self.contrast != 1.0 or self.brightness:
            out = (out - out.mean()) * self.contrast + out.mean() + self.brightness
        if self.noise_sigma:
            out = out + np.random.default_rng(self.seed).normal(0, self.noise_sigma, pixels.shape)
        if self.shift != (0, 0):
            out = ndimage.shift(out, self.shift, order=0, mode="nearest")
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def align(self, reference: np.ndarray, moved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The reference map and the perturbed map moved back, on their common region."""
        dy, dx = self.shift
        h, w = reference.shape
        back = moved[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
        ref = reference[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
        return ref, back


DEFAULT_PERTURBATIONS = (
    Perturbation("gaussian noise sigma=0.02", noise_sigma=0.02),
    Perturbation("brightness +0.05", brightness=0.05),
    Perturbation("contrast x1.1", contrast=1.1),
    Perturbation("shift 4 px", shift=(4, 4)),
)


def _similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    small_a, small_b = _downsample(a), _downsample(b)
    return map_spearman(small_a, small_b), ssim(small_a, small_b)


def stability(
    explain: Explainer,
    images: Sequence[np.ndarray],
    perturbations: Sequence[Perturbation] = DEFAULT_PERTURBATIONS,
) -> dict[str, dict[str, dict[str, Any]]]:
    """model -> perturbation -> {n, spearman_mean, ssim_mean, spearman, ssim} over images."""
    scores: dict[str, dict[str, dict[str, list[float]]]] = {}
    for pixels in images:
        reference = explain(pixels)
        for perturbation in perturbations:
            moved = explain(perturbation.apply(pixels))
            for model, heat in reference.items():
                if model not in moved:
                    continue
                rho, sim = _similarity(*perturbation.align(heat, moved[model]))
                cell = scores.setdefault(model, {}).setdefault(
                    perturbation.name, {"spearman": [], "ssim": []}
                )
                cell["spearman"].append(rho)
                cell["ssim"].append(sim)
    return {
        model: {name: _summarize(cell) for name, cell in per.items()}
        for model, per in scores.items()
    }


def _summarize(cell: Mapping[str, list[float]]) -> dict[str, Any]:
    rho, sim = np.array(cell["spearman"]), np.array(cell["ssim"])
    finite = np.isfinite(rho)
    return {
        "n": int(rho.size),
        "spearman_mean": float(rho[finite].mean()) if finite.any() else None,
        "ssim_mean": float(sim.mean()) if sim.size else None,
        "undefined": int((~finite).sum()),
    }


def agreement_matrix(
    maps: Sequence[Mapping[str, np.ndarray]], models: Sequence[str]
) -> dict[str, Any]:
    """Mean Spearman of two models' maps on the same image, over the images both explained."""
    matrix = np.full((len(models), len(models)), np.nan)
    counts = np.zeros((len(models), len(models)), dtype=int)
    for i, j in itertools.combinations_with_replacement(range(len(models)), 2):
        values = [
            map_spearman(_downsample(m[models[i]]), _downsample(m[models[j]]))
            for m in maps
            if models[i] in m and models[j] in m
        ]
        finite = [v for v in values if np.isfinite(v)]
        if finite:
            matrix[i, j] = matrix[j, i] = float(np.mean(finite))
        counts[i, j] = counts[j, i] = len(finite)
    as_list = [[None if not np.isfinite(v) else float(v) for v in row] for row in matrix]
    return {"models": list(models), "matrix": as_list, "n": counts.tolist()}


class EngineExplainer:
    """An in-process explainer: letterbox, engine forward + Grad-CAM, map onto the original."""

    def __init__(self, engine: Any, name: str, input_size: int | None = None) -> None:
        self.engine, self.name = engine, name
        self.input_size = input_size or engine.spec.input_size

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        from ptxplain.imaging.preprocess import letterbox, map_to_original, to_model_input

        canvas, geometry = letterbox(pixels, self.input_size)
        batch = to_model_input(canvas, self.engine.spec.mean, self.engine.spec.std)[None]
        cam = self.engine.explain(batch, methods=("gradcam",)).cams["gradcam"][0]
        return {self.name: map_to_original(cam, geometry)}


def randomize_top_layers(model: torch.nn.Module, n_modules: int, seed: int = 0) -> torch.nn.Module:
    """A copy whose last ``n_modules`` parameterized modules (the output end, in definition
    order) are re-initialized with their own ``reset_parameters``."""
    clone = copy.deepcopy(model)
    resettable = [
        m
        for m in clone.modules()
        if hasattr(m, "reset_parameters") and any(p.numel() for p in m.parameters(recurse=False))
    ]
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in resettable[-n_modules:]:
            cast(Any, module).reset_parameters()
    return clone


def layers_from_target(model: torch.nn.Module, target_layer: str) -> int:
    """How many parameterized modules sit at or after the CAM's target layer (definition
    order): re-initializing those is the check's "top layers"."""
    count, reached = 0, False
    for name, module in model.named_modules():
        reached = reached or name == target_layer
        if reached and any(p.numel() for p in module.parameters(recurse=False)):
            count += int(hasattr(module, "reset_parameters"))
    return count


def randomization_check(
    trained: Explainer, randomized: Explainer, images: Sequence[np.ndarray]
) -> dict[str, dict[str, Any]]:
    """Similarity of trained vs randomized maps per model; ``passes`` when they differ (mean
    Spearman below :data:`RANDOMIZATION_MAX_SPEARMAN`; undefined, e.g. constant maps, fails)."""
    cells: dict[str, dict[str, list[float]]] = {}
    for pixels in images:
        before, after = trained(pixels), randomized(pixels)
        for model in before.keys() & after.keys():
            rho, sim = _similarity(before[model], after[model])
            cell = cells.setdefault(model, {"spearman": [], "ssim": []})
            cell["spearman"].append(rho)
            cell["ssim"].append(sim)
    out = {}
    for model, cell in cells.items():
        summary = _summarize(cell)
        rho = summary["spearman_mean"]
        summary["passes"] = bool(rho is not None and rho < RANDOMIZATION_MAX_SPEARMAN)
        out[model] = summary
    return out


# -- evaluation glue ------------------------------------------------------------------------


def png16(pixels: np.ndarray) -> bytes:
    """A (H, W) image in [0, 1] as a 16-bit grayscale PNG (what the gateway accepts)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.rint(np.clip(pixels, 0, 1) * 65535).astype(np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


class ClientExplainer:
    """An explainer over the gateway: each call is one fan-out of a 16-bit PNG."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        from ptxplain.imaging.preprocess import Geometry, map_to_original

        answer = self.client.explain("robustness", png16(pixels))
        return {
            name: map_to_original(a.heatmap, Geometry(**a.geometry))
            for name, a in answer.answers.items()
            if a.ok and a.heatmap is not None and a.geometry is not None
        }


def engine_pair(architecture: str, weights: Any, seed: int = 0) -> tuple[Any, Any]:
    """Engines for the trained model and for a copy with every module from the CAM's target
    layer to the output re-initialized."""
    from ptxplain.explain.engine import ExplanationEngine
    from ptxplain.models.registry import get_spec
    from ptxplain.models.weights import load_weights

    spec = get_spec(architecture)
    model = load_weights(spec.build(), weights, architecture)
    top = layers_from_target(model, spec.target_layer)
    randomized = randomize_top_layers(model, top, seed=seed)
    return ExplanationEngine(model, spec), ExplanationEngine(randomized, spec)
