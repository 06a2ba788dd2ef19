"""Data sets on disk: SIIM-ACR, PNG and folder readers, the RLE codec, the patient-level split,
pseudonyms and DICOM I/O.

Modules are imported by name (``from harness.data import dataset``); nothing is
imported here, so importing one module does not pull in the others (or torch).
"""

__all__ = [
    "dataset",
    "dicom_io",
    "layouts",
    "png_layout",
    "pseudonym",
    "rle",
    "siim",
    "split",
]
