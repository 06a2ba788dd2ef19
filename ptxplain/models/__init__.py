"""Architectures: the registry of typed specs, model metadata, local weights.

Modules are imported by name (``from ptxplain.models import meta``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "meta",
    "registry",
    "weights",
]
