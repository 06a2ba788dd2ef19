"""The edge: what is checked once per request before any model is asked.

* the image: not empty, at most the configured cap (default 32 MiB; the message names the cap),
  and a PNG, JPEG or DICOM Part 10 by its magic bytes — so a wrong upload fails once, not once
  per model. :func:`~ptxplain.image_format.sniff_format` is the handler's own rule, from a
  dependency-free module: the gateway runs without numpy, Pillow, pydicom or torch;
* the models: every requested name must be served (else INVALID_ARGUMENT naming it); none
  requested = every ready model;
* the options, turned into the handler's input keys (the handler validates their values).
"""

from __future__ import annotations

import dataclasses
import time

from ptxplain.errors import ImageTooLargeError, InvalidInputError, InvalidOptionError
from ptxplain.image_format import sniff_format
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import result_pb2 as pb
from services.gateway.backend import encode_predictions_request

__all__ = ["ENCODING_NAMES", "CallOptions", "ExplainCall", "check_image", "sniff_format"]

ENCODING_NAMES = {
    pb.MAP_ENCODING_FLOAT16: "float16",
    pb.MAP_ENCODING_FLOAT32: "float32",
    pb.MAP_ENCODING_UINT8: "uint8",
    pb.MAP_ENCODING_PNG: "png",
}
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class CallOptions:
    """The request's options; empty / None = the handler's default."""

    methods: tuple[str, ...] = ()
    target: str = ""
    map_size: str = ""
    map_encoding: str = ""
    normalize: bool | None = None
    logits_only: bool = False

    def __post_init__(self) -> None:
        if self.map_encoding and self.map_encoding not in ENCODING_NAMES.values():
            raise InvalidOptionError(
                f"map_encoding must be one of {', '.join(ENCODING_NAMES.values())}, "
                f"got {self.map_encoding!r}"
            )

    @classmethod
    def from_proto(cls, options: epb.ExplainOptions) -> CallOptions:
        encoding = options.map_encoding
        if encoding and encoding not in ENCODING_NAMES:
            raise InvalidOptionError(f"options.map_encoding {encoding} is not a known encoding")
        return cls(
            methods=tuple(m.strip() for m in options.methods if m.strip()),
            target=options.target.strip(),
            map_size=options.map_size.strip(),
            map_encoding=ENCODING_NAMES.get(encoding, ""),
            normalize=options.normalize if options.HasField("normalize") else None,
            logits_only=options.logits_only,
        )

    def handler_inputs(self) -> dict[str, bytes]:
        """The handler's option keys (ptxplain/explain/options.py), as gRPC input-map bytes."""
        inputs: dict[str, str] = {}
        if self.methods:
            inputs["methods"] = ",".join(self.methods)
        for name in ("target", "map_size", "map_encoding"):
            if getattr(self, name):
                inputs[name] = getattr(self, name)
        if self.normalize is not None:
            inputs["normalize"] = "true" if self.normalize else "false"
        if self.logits_only:
            inputs["logits_only"] = "true"
        return {key: value.encode() for key, value in inputs.items()}


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
        options: CallOptions,
        image_format: str,
        received: float,
        timeout_s: float | None,
    ) -> ExplainCall:
        inputs = {**options.handler_inputs(), "data": image}
        return cls(
            request_id=request_id,
            models=tuple(models),
            image_format=image_format,
            image_bytes=len(image),
            shared_request=encode_predictions_request(inputs),
            received=received,
            deadline=None if timeout_s is None else time.monotonic() + timeout_s,
        )
