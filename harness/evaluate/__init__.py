"""Evaluation: the gateway client, the replay of a test set, and the run that writes metrics.

Modules are imported by name (``from harness.evaluate import client``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "client",
    "replay",
    "run",
]
