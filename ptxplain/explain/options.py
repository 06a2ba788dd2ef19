"""Per-request options, identical for REST (query parameters) and gRPC (input map entries).

methods       comma-separated CAM methods (default "gradcam"); see ptxplain.explain.methods
target        "positive" (default), "predicted", or a class index
map_size      "native" (the target layer's grid, default), "input" (the model's input size),
              "N" (N x N) or "HxW"; at most ``max_map_side`` per side
map_encoding  "float16" (default), "float32", "uint8" or "png" (the last two: normalized only)
normalize     "true" (default: min-max to [0, 1] per image) or "false" (raw CAM values)
logits_only   "true" skips the maps (the forward pass then runs under inference_mode)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ptxplain.errors import InvalidOptionError
from ptxplain.explain.engine import Target
from ptxplain.explain.methods import DEFAULT_METHOD, get_method

__all__ = ["DATA_KEYS", "ENCODINGS", "RequestOptions", "parse_options"]

DATA_KEYS = ("data", "body")
OPTION_KEYS = ("methods", "target", "map_size", "map_encoding", "normalize", "logits_only")
ENCODINGS = ("float16", "float32", "uint8", "png")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclasses.dataclass(frozen=True)
class RequestOptions:
    methods: tuple[str, ...] = (DEFAULT_METHOD,)
    target: Target = "positive"
    map_size: tuple[int, int] | str = "native"
    map_encoding: str = "float16"
    normalize: bool = True
    logits_only: bool = False

    @property
    def wants_maps(self) -> bool:
        return not self.logits_only and bool(self.methods)


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
    raise InvalidOptionError(f"option {key!r} must be true or false, got {text!r}")


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    if not names:
        raise InvalidOptionError("option 'methods' names no CAM method")
    return tuple(get_method(n).name for n in names)


def _target(text: str, num_classes: int) -> Target:
    if text in ("positive", "predicted"):
        return text  # type: ignore[return-value]
    if text.lstrip("-").isdigit() and 0 <= int(text) < num_classes:
        return int(text)
    raise InvalidOptionError(
        f"option 'target' must be 'positive', 'predicted' or a class index in "
        f"0..{num_classes - 1}, got {text!r}"
    )


def _map_size(text: str, max_side: int) -> tuple[int, int] | str:
    if text in ("native", "input"):
        return text
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise InvalidOptionError(f"option 'map_size' must be native, input, N or HxW, got {text!r}")
    h, w = int(parts[0]), int(parts[1])
    if not (1 <= h <= max_side and 1 <= w <= max_side):
        raise InvalidOptionError(f"option 'map_size' {text!r} is outside 1..{max_side} per side")
    return (h, w)


def parse_options(
    raw: Mapping[str, object], *, num_classes: int, max_map_side: int = 1024
) -> RequestOptions:
    """Validate a request's options; unknown keys are an error (a typo must not pass silently)."""
    unknown = sorted(set(raw) - set(OPTION_KEYS) - set(DATA_KEYS))
    if unknown:
        raise InvalidOptionError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTION_KEYS)}"
        )
    text = {k: _text(v, k) for k, v in raw.items() if k in OPTION_KEYS}
    opts = RequestOptions(
        methods=_methods(text["methods"]) if "methods" in text else RequestOptions.methods,
        target=_target(text["target"], num_classes) if "target" in text else "positive",
        map_size=_map_size(text["map_size"], max_map_side) if "map_size" in text else "native",
        map_encoding=text.get("map_encoding", "float16").lower(),
        normalize=_flag(text["normalize"], "normalize") if "normalize" in text else True,
        logits_only=_flag(text["logits_only"], "logits_only") if "logits_only" in text else False,
    )
    if opts.map_encoding not in ENCODINGS:
        raise InvalidOptionError(
            f"option 'map_encoding' must be one of {', '.join(ENCODINGS)}, got {opts.map_encoding!r}"
        )
    if not opts.normalize and opts.map_encoding in ("uint8", "png"):
        raise InvalidOptionError(
            f"map_encoding {opts.map_encoding!r} needs normalized maps (normalize=true)"
        )
    return opts
