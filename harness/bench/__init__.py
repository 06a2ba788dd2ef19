"""Benchmarks: the engine against a plain forward and stock grad-cam; the gateway against in-process.

Modules are imported by name (``from harness.bench import engine``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "engine",
    "gateway",
]
