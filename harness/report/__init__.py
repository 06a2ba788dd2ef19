"""The report: sections, plots and the HTML template.

Modules are imported by name (``from harness.report import build``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "build",
    "plots",
    "sections",
    "study_sections",
]
