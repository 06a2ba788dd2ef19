"""Explanations: the one engine (logits + CAM from one forward pass), CAM methods, maps,
request options, the result codec and overlays.

Modules are imported by name (``from ptxplain.explain import engine``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "engine",
    "maps",
    "methods",
    "options",
    "overlay",
    "result_codec",
]
