"""Studies with a known answer, run end to end in-process (phantom, training, evaluation).

Modules are imported by name (``from harness.study import shortcut``).
"""

__all__ = ["shortcut"]
