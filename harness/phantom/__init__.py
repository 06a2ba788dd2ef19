"""The synthetic phantom: anatomy, lesions and the generator writing it in SIIM-ACR's layout.

Modules are imported by name (``from harness.phantom import anatomy``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "anatomy",
    "generate",
    "lesion",
]
