"""TorchServe's entry point, copied into every archive as ``ptxplain_handler.py``.

TorchServe's loader imports this module and instantiates the one class defined in it, so this
file must define exactly one class. All the work is in :mod:`handlers.torchserve_handler`, which
the workers import from this repository (PYTHONPATH set by services/torchserve/process.py).
"""

from handlers.torchserve_handler import PtxplainHandler

__all__ = ["Handler"]


class Handler(PtxplainHandler):
    """The served handler: ptxplain's, unchanged."""
