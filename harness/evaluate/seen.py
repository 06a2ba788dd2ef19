"""The per-image held-out check: an evaluated image that a model was trained on is an error.

Each model's handler digests every image it decodes and flags one whose pixels are among the
training and validation images of its checkpoint (``ExplainResult.seen_in_training``; the
digests travel in the archive as ``train-digests.bin``, see :mod:`harness.train.digests`). The
gateway's model list says how many digests a handler holds (``training_digests``; 0: an archive
without them, so nothing is checked).

:func:`held_out_check` runs over the stored answers. Any seen image raises
:class:`~ptxplain.errors.SeenInTrainingError` (``ptxplain evaluate`` exits 2) naming the model,
how many of its evaluated images it was trained on and a few of their ids, unless ``allow``
(``--allow-seen``): then :func:`exclude_seen` drops those answers from that model's metrics and
the report's provenance table says how many.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from harness.metrics.depth import ModelFacts
from harness.store import ImageResult
from ptxplain.errors import Code, SeenInTrainingError

__all__ = ["EXCLUDED_MESSAGE", "exclude_seen", "held_out_check"]

EXCLUDED_MESSAGE = "excluded: seen in training (--allow-seen)"
_EXAMPLES = 3


def _seen_ids(results: Mapping[str, ImageResult], model: str) -> list[str]:
    return sorted(
        image_id
        for image_id, result in results.items()
        if (answer := result.answers.get(model)) is not None
        and answer.ok
        and answer.seen_in_training
    )


def _evaluated(results: Mapping[str, ImageResult], model: str) -> int:
    return sum(1 for r in results.values() if (a := r.answers.get(model)) is not None and a.ok)


def _block(results: Mapping[str, ImageResult], facts: ModelFacts, allow: bool) -> dict[str, Any]:
    digests = int((facts.provenance or {}).get("training_digests") or 0)
    seen = _seen_ids(results, facts.name)
    return {
        "checked": digests > 0,
        "training_digests": digests,
        "evaluated": _evaluated(results, facts.name),
        "seen": len(seen),
        "seen_examples": seen[:_EXAMPLES],
        "excluded": bool(seen) and allow,
        "seen_ids": seen,
    }


def _refusal(blocks: Mapping[str, dict[str, Any]]) -> SeenInTrainingError:
    """One model: the error's ``model`` names it; several: the message names each."""
    seen = {name: b for name, b in blocks.items() if b["seen"]}
    parts = [
        f"{name + ' ' if len(seen) > 1 else ''}was trained on {b['seen']} of its "
        f"{b['evaluated']} evaluated images (e.g. {', '.join(b['seen_examples'])})"
        for name, b in seen.items()
    ]
    return SeenInTrainingError(
        "; ".join(parts) + ": its metrics would not measure held-out performance. Evaluate on "
        "a test split the model was not trained on, or pass --allow-seen to leave those images "
        "out of its metrics",
        model=next(iter(seen)) if len(seen) == 1 else "",
    )


def held_out_check(
    results: Mapping[str, ImageResult], facts: Mapping[str, ModelFacts], *, allow: bool
) -> dict[str, dict[str, Any]]:
    """Per model: whether it was checked and how many evaluated images it had seen; raises
    :class:`SeenInTrainingError` for any seen image unless ``allow``."""
    blocks = {name: _block(results, f, allow) for name, f in facts.items()}
    if not allow and any(b["seen"] for b in blocks.values()):
        raise _refusal(blocks)
    return blocks


def exclude_seen(
    results: Mapping[str, ImageResult], blocks: Mapping[str, dict[str, Any]]
) -> dict[str, ImageResult]:
    """The results with each model's seen answers turned into :data:`EXCLUDED_MESSAGE`
    answers, which the metrics leave out (the store is not changed)."""
    excluded = {(name, i) for name, b in blocks.items() if b["excluded"] for i in b["seen_ids"]}
    if not excluded:
        return dict(results)
    return {
        image_id: dataclasses.replace(
            result,
            answers={
                model: dataclasses.replace(
                    answer, code=int(Code.FAILED_PRECONDITION), message=EXCLUDED_MESSAGE
                )
                if (model, image_id) in excluded
                else answer
                for model, answer in result.answers.items()
            },
        )
        for image_id, result in results.items()
    }
