"""What evaluation measures: classification, localization, robustness, depth, latency, statistics.

Modules are imported by name (``from harness.metrics import classification``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "classification",
    "depth",
    "latency",
    "localization",
    "robustness",
    "stats",
    "study",
]
