"""Per-request options: ONE typed model for every door (gRPC, HTTP query, the TorchServe handler's
input keys, the CLI and the clients).

methods       comma-separated CAM methods (default "gradcam"); see ptxplain.explain.methods
target        "positive" (default), "predicted", or a class index
map_size      "native" (the target layer's grid, default), "input" (the model's input size),
              "N" (N x N) or "HxW"; at most ``max_map_side`` per side
map_encoding  "float16" (default), "float32", "uint8" or "png" (the last two: normalized only)
normalize     "true" (default: min-max to [0, 1] per image) or "false" (raw CAM values)
logits_only   "true" skips the maps (the forward pass then runs under inference_mode)

:class:`ExplainOptions` is what a request asks, as the client said it (empty / ``None`` = the
handler's default). It is built from a proto (:meth:`~ExplainOptions.from_proto`) or from text
keys (:meth:`~ExplainOptions.from_inputs`: the handler's input map, query parameters), and
turned back into the handler's input keys (:meth:`~ExplainOptions.to_inputs`). Only the handler
knows the model (its classes, its CAM methods), so it alone resolves the options into
:class:`RequestOptions` (:meth:`~ExplainOptions.resolve`). This module needs no torch: the
gateway uses it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Literal

from ptxplain.errors import InvalidOptionError, quoted
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import result_pb2 as pb

__all__ = [
    "DATA_KEYS",
    "DEFAULT_METHOD",
    "ENCODINGS",
    "ENCODING_BY_PROTO",
    "OPTION_KEYS",
    "ExplainOptions",
    "RequestOptions",
    "Target",
    "method_names",
    "parse_options",
]

Target = Literal["positive", "predicted"] | int

DATA_KEYS = ("data", "body")
OPTION_KEYS = ("methods", "target", "map_size", "map_encoding", "normalize", "logits_only")
DEFAULT_METHOD = "gradcam"
# The map encodings: the proto's enum values and their names, in one table.
ENCODING_BY_PROTO = {
    pb.MAP_ENCODING_FLOAT16: "float16",
    pb.MAP_ENCODING_FLOAT32: "float32",
    pb.MAP_ENCODING_UINT8: "uint8",
    pb.MAP_ENCODING_PNG: "png",
}
ENCODINGS = tuple(ENCODING_BY_PROTO.values())
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
# ASCII digits only ("²" is a digit to str.isdigit, not to int), and few of them.
_INDEX = re.compile(r"-?[0-9]{1,9}")
_SIZE = re.compile(r"([0-9]{1,9})(?:x([0-9]{1,9}))?")


@dataclasses.dataclass(frozen=True)
class RequestOptions:
    """The options resolved for one model: defaults filled, values checked."""

    methods: tuple[str, ...] = (DEFAULT_METHOD,)
    target: Target = "positive"
    map_size: tuple[int, int] | str = "native"
    map_encoding: str = "float16"
    normalize: bool = True
    logits_only: bool = False

    @property
    def wants_maps(self) -> bool:
        return not self.logits_only and bool(self.methods)


@dataclasses.dataclass(frozen=True)
class ExplainOptions:
    """A request's options as the client gave them; empty / None = the handler's default."""

    methods: tuple[str, ...] = ()
    target: str = ""
    map_size: str = ""
    map_encoding: str = ""
    normalize: bool | None = None
    logits_only: bool = False

    def __post_init__(self) -> None:
        if self.map_encoding and self.map_encoding not in ENCODINGS:
            raise InvalidOptionError(
                f"option 'map_encoding' must be one of {', '.join(ENCODINGS)}, "
                f"got {quoted(self.map_encoding)}"
            )

    @classmethod
    def from_proto(cls, options: epb.ExplainOptions) -> ExplainOptions:
        encoding = options.map_encoding
        if encoding and encoding not in ENCODING_BY_PROTO:
            raise InvalidOptionError(f"options.map_encoding {encoding} is not a known encoding")
        return cls(
            methods=method_names(list(options.methods)),
            target=options.target.strip(),
            map_size=options.map_size.strip(),
            map_encoding=ENCODING_BY_PROTO.get(encoding, ""),
            normalize=options.normalize if options.HasField("normalize") else None,
            logits_only=options.logits_only,
        )

    @classmethod
    def from_inputs(cls, raw: Mapping[str, object]) -> ExplainOptions:
        """From text keys (str or UTF-8 bytes); unknown keys are an error (a typo must not pass
        silently). The image keys (:data:`DATA_KEYS`) are allowed and ignored."""
        unknown = sorted(str(key) for key in set(raw) - set(OPTION_KEYS) - set(DATA_KEYS))
        if unknown:
            named = ", ".join(quoted(key, 32) for key in unknown[:5])
            raise InvalidOptionError(f"unknown option(s) {named}; known: {', '.join(OPTION_KEYS)}")
        text = {k: _text(v, k) for k, v in raw.items() if k in OPTION_KEYS}
        return cls(
            methods=method_names([text["methods"]]) if "methods" in text else (),
            target=text.get("target", ""),
            map_size=text.get("map_size", ""),
            map_encoding=text.get("map_encoding", "").lower(),
            normalize=_flag(text["normalize"], "normalize") if "normalize" in text else None,
            logits_only=_flag(text["logits_only"], "logits_only")
            if "logits_only" in text
            else False,
        )

    def to_inputs(self) -> dict[str, str]:
        """The handler's option keys, only those set (the rest stay the handler's default)."""
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
        return inputs

    def resolve(
        self, *, num_classes: int, max_map_side: int, method_name: Callable[[str], str]
    ) -> RequestOptions:
        """The options for one model: ``method_name`` gives a CAM method's canonical name (and
        raises for an unknown one)."""
        opts = RequestOptions(
            methods=tuple(dict.fromkeys(method_name(m) for m in self.methods))
            if self.methods
            else RequestOptions.methods,
            target=_target(self.target, num_classes) if self.target else "positive",
            map_size=_map_size(self.map_size, max_map_side) if self.map_size else "native",
            map_encoding=self.map_encoding or "float16",
            normalize=True if self.normalize is None else self.normalize,
            logits_only=self.logits_only,
        )
        if not opts.normalize and opts.map_encoding in ("uint8", "png"):
            raise InvalidOptionError(
                f"map_encoding {opts.map_encoding!r} needs normalized maps (normalize=true)"
            )
        return opts


def parse_options(
    raw: Mapping[str, object],
    *,
    num_classes: int,
    method_name: Callable[[str], str],
    max_map_side: int = 1024,
) -> RequestOptions:
    """The handler's door: text keys in, options for its model out."""
    return ExplainOptions.from_inputs(raw).resolve(
        num_classes=num_classes, max_map_side=max_map_side, method_name=method_name
    )


def _text(value: object, key: str) -> str:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise InvalidOptionError(f"option {key!r} is not UTF-8 text") from exc
    return str(value).strip()


def _flag(text: str, key: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise InvalidOptionError(f"option {key!r} must be true or false, got {quoted(text)}")


def method_names(values: list[str]) -> tuple[str, ...]:
    """CAM method names from repeated and/or comma-separated values; values that name none
    (``",,,"``) are an error, for gRPC, HTTP and the handler alike."""
    names = tuple(
        dict.fromkeys(n.strip().lower() for value in values for n in value.split(",") if n.strip())
    )
    if values and not names:
        raise InvalidOptionError("option 'methods' names no CAM method")
    return names


def _target(text: str, num_classes: int) -> Target:
    if text in ("positive", "predicted"):
        return text  # type: ignore[return-value]
    if _INDEX.fullmatch(text) and 0 <= int(text) < num_classes:
        return int(text)
    raise InvalidOptionError(
        f"option 'target' must be 'positive', 'predicted' or a class index in "
        f"0..{num_classes - 1}, got {quoted(text)}"
    )


def _map_size(text: str, max_side: int) -> tuple[int, int] | str:
    if text in ("native", "input"):
        return text
    match = _SIZE.fullmatch(text.lower())
    if match is None:
        raise InvalidOptionError(
            f"option 'map_size' must be native, input, N or HxW, got {quoted(text)}"
        )
    h = int(match.group(1))
    w = int(match.group(2) or h)
    if not (1 <= h <= max_side and 1 <= w <= max_side):
        raise InvalidOptionError(
            f"option 'map_size' {quoted(text)} is outside 1..{max_side} per side"
        )
    return (h, w)
