"""Which image a request carries, from its magic bytes alone: one rule for the handler and the
gateway. Dependency-free on purpose: the gateway runs without numpy, Pillow, pydicom or torch."""

from __future__ import annotations

from typing import Literal

from ptxplain.errors import DecodeError

__all__ = ["FORM_UPLOAD_HINT", "ImageFormat", "looks_like_form_upload", "sniff_format"]

ImageFormat = Literal["png", "jpeg", "dicom"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
_DICOM_MAGIC = b"DICM"
_DICOM_MAGIC_OFFSET = 128  # DICOM Part 10: a 128-byte preamble, then 'DICM'
FORM_UPLOAD_HINT = (
    "this looks like a multipart/form-data upload sent as the raw body: send it with its "
    "header (curl -F data=@image.png sets Content-Type: multipart/form-data; boundary=...) "
    "or send the file itself (curl --data-binary @image.png)"
)


def looks_like_form_upload(data: bytes) -> bool:
    """A form upload's body: a ``--boundary`` line, then a part's headers."""
    return data.startswith(b"--") and b"content-disposition:" in bytes(data[:1024]).lower()


def sniff_format(data: bytes) -> ImageFormat:
    """The image format from its magic bytes; :class:`DecodeError` for anything else."""
    if not data:
        raise DecodeError("empty body")
    if data.startswith(_PNG_SIGNATURE):
        return "png"
    if data.startswith(_JPEG_SOI):
        return "jpeg"
    if data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == _DICOM_MAGIC:
        return "dicom"
    hint = f"; {FORM_UPLOAD_HINT}" if looks_like_form_upload(data) else ""
    raise DecodeError(
        f"not a PNG, JPEG or DICOM image (first bytes: {bytes(data[:16]).hex(' ')}); "
        f"a DICOM file needs its 128-byte preamble and 'DICM'{hint}"
    )
