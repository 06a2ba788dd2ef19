"""The edge: what is checked once per request before any model is asked.

* the image: not empty, at most the configured cap (default 32 MiB; the message names the cap),
  and a PNG, JPEG or DICOM Part 10 by its magic bytes — so a wrong upload fails once, not once
  per model. :func:`~ptxplain.image_format.sniff_format` is the handler's own rule, from a
  dependency-free module: the gateway runs without numpy, Pillow, pydicom or torch;
* the models: every requested name must be served (else INVALID_ARGUMENT naming it); none
  requested = every ready model;
* the options (:class:`~ptxplain.explain.options.ExplainOptions`), turned into the handler's
  input keys (the handler validates their values against its model).
"""

from __future__ import annotations

import dataclasses
import time

from ptxplain.errors import ImageTooLargeError, InvalidInputError
from ptxplain.explain.options import ExplainOptions
from ptxplain.image_format import sniff_format
from services.gateway.backend import encode_predictions_request

__all__ = ["ExplainCall", "check_image", "handler_inputs", "sniff_format"]

MIB = 1024 * 1024


def handler_inputs(options: ExplainOptions) -> dict[str, bytes]:
    """The handler's option keys, as gRPC input-map bytes."""
    return {key: value.encode() for key, value in options.to_inputs().items()}


def check_image(image: bytes, max_bytes: int) -> str:
    """The image's format ("png", "jpeg", "dicom"); raises for empty, too large, or unknown."""
    if not image:
        raise InvalidInputError("empty image: the request carries no image bytes")
    if len(image) > max_bytes:
        raise ImageTooLargeError(
            f"image is {len(image)} bytes, over the gateway's cap of {max_bytes} bytes "
            f"({max_bytes / MIB:g} MiB)"
        )
    return sniff_format(image)


@dataclasses.dataclass(frozen=True)
class ExplainCall:
    """A request that passed the edge, ready to fan out."""

    request_id: str
    models: tuple[str, ...]
    image_format: str
    image_bytes: int
    # The PredictionsRequest without its model name (image + options), serialized once.
    shared_request: bytes
    # time.perf_counter() when the request arrived; time.monotonic() deadline or None.
    received: float
    deadline: float | None

    @classmethod
    def build(
        cls,
        *,
        request_id: str,
        image: bytes,
        models: list[str],
        options: ExplainOptions,
        image_format: str,
        received: float,
        timeout_s: float | None,
    ) -> ExplainCall:
        inputs = {**handler_inputs(options), "data": image}
        return cls(
            request_id=request_id,
            models=tuple(models),
            image_format=image_format,
            image_bytes=len(image),
            shared_request=encode_predictions_request(inputs),
            received=received,
            deadline=None if timeout_s is None else time.monotonic() + timeout_s,
        )
