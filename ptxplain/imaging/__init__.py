"""Images in: decoding (PNG / JPEG / DICOM), image types, pixel digests, letterbox preprocessing.

Modules are imported by name (``from ptxplain.imaging import decode``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "decode",
    "dicom",
    "digest",
    "preprocess",
    "types",
]
