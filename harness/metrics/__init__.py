"""What evaluation measures: classification, localization (raw, and calibrated against floors and
ceilings at each model's grid), paired comparisons, robustness, depth, latency, statistics, and
the answer in words.

Modules are imported by name (``from harness.metrics import classification``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "answer",
    "baselines",
    "classification",
    "comparisons",
    "depth",
    "latency",
    "localization",
    "robustness",
    "stats",
    "study",
]
