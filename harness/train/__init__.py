"""Training: configs and profiles, data, augmentation, the loop, state, metrics, pretrained weights.

Modules are imported by name (``from harness.train import augment``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "augment",
    "config",
    "data",
    "digests",
    "embedded",
    "loop",
    "metrics",
    "pretrained",
    "profiles",
    "run",
    "state",
]
