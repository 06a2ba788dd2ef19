"""Send one image to the gateway and write what every model says about it.

  ptxplain explain chest.dcm --out explained/
  ptxplain explain chest.png --models resnet18,vit_s16 --methods gradcam,hirescam --gateway host:50051
  ptxplain explain chest.png --gateway grpcs://gw.example:443 --token-file token --tls-ca ca.pem

Writes OUT/<model>_<method>.png — the model's map laid on the ORIGINAL image (undoing the
letterbox with the result's geometry) as the browser viewer draws it: a perceptual colour map
(inferno) over the gray image, heat below 0.2 transparent, with a caption (model, architecture,
verdict, probability, threshold, method, grid; an all-zero map says so) and a colour bar — and
OUT/summary.json: per model its status, label (positive by its own threshold), probabilities,
trained or not, and stage timings. A model that failed is listed with its error; the command
exits 0 when at least one model answered, 1 when none did.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "explain"
HELP = "explain one image with every model through the gateway"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ptxplain.cli.client_flags import add_alias, add_gateway_flags

    parser.add_argument("image", type=Path, help="PNG, JPEG or DICOM file")
    parser.add_argument("--models", default="", help="comma-separated; default: every ready model")
    parser.add_argument("--out", type=Path, default=Path("explained"), help="output folder")
    parser.add_argument(
        "--methods", default="", help="CAM methods, comma-separated (default gradcam)"
    )
    parser.add_argument(
        "--target", default="", help="positive (default), predicted or a class index"
    )
    parser.add_argument("--map-size", default="input", help="map resolution asked for")
    parser.add_argument(
        "--colormap",
        default="inferno",
        help="inferno (default), magma, viridis, cividis, turbo, jet",
    )
    parser.add_argument("--opacity", type=float, default=0.6, help="heat opacity, 0..1 (0.6)")
    parser.add_argument(
        "--transparent-below",
        type=float,
        default=0.2,
        help="heat under this level (0..1) is not drawn (0.2)",
    )
    gateway = add_gateway_flags(parser)
    add_alias(gateway, "--timeout", "--deadline", type=float)


def _explain(args: argparse.Namespace, image: bytes) -> tuple[Any, str]:
    import grpc

    from ptxplain.cli.client_flags import grpc_address, root_certificates, token, unreachable_error
    from ptxplain.errors import BackendError
    from ptxplain.v1 import explainer_pb2 as epb
    from services.gateway.client import ExplainerClient

    options = epb.ExplainOptions(
        methods=[m for m in args.methods.split(",") if m.strip()],
        target=args.target,
        map_size=args.map_size,
    )
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    address = grpc_address(args.gateway)
    ca = root_certificates(args)
    with ExplainerClient(
        address.target, token=token(args), root_certificates=ca, tls=address.tls
    ) as client:
        try:
            return client.explain(image, models, options, timeout_s=args.deadline)
        except grpc.RpcError as exc:
            detail = f"{exc.code().name}: {exc.details()}"
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise unreachable_error(args.gateway, "grpc", detail) from exc
            raise BackendError(f"gateway {args.gateway}: {detail}") from exc


def run(args: argparse.Namespace) -> int:
    from ptxplain.errors import ConfigError, InvalidOptionError
    from ptxplain.explain.overlay import Look, write_outputs

    try:
        look = Look(args.colormap, args.opacity, args.transparent_below)
    except ValueError as exc:
        raise InvalidOptionError(str(exc)) from exc
    try:
        image = args.image.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read image {args.image}: {exc}") from exc
    response, request_id = _explain(args, image)
    summary = write_outputs(image, response, request_id, args.out, look)
    for name, entry in summary["models"].items():
        if entry["status"] == "OK":
            verdict = "positive" if entry["positive"] else "negative"
            print(
                f"{name:<18} {verdict:<9} p={entry['positive_probability']:.3f} "
                f"(threshold {entry['threshold']:.2f}) trained on: {entry['trained_on'] or '?'}"
                + (
                    "  [this image is one the model was trained on]"
                    if entry["seen_in_training"]
                    else ""
                )
            )
        else:
            print(f"{name:<18} {entry['status']}: {entry['message']}")
    print(f"request {request_id}; wrote {args.out}/summary.json")
    return 0 if any(e["status"] == "OK" for e in summary["models"].values()) else 1
