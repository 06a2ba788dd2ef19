"""A client of the gateway-in-image, run inside the stack's network namespace.

    python -m tests.deploy.image_client --image phantom.dcm --token-file token [--grpc ...]

Sends one DICOM over gRPC and over HTTP (every model), garbage over both, and asks
ListModels and /readyz; prints one JSON object with what came back (test_images_live.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import requests

from ptxplain.v1 import explainer_pb2 as epb
from services.gateway import ExplainerClient


def _grpc_results(client: ExplainerClient, image: bytes) -> list[dict[str, Any]]:
    response, _ = client.explain(image, timeout_s=300)
    return [
        {
            "model": r.model,
            "code": r.status.code,
            "maps": len(r.result.maps),
            "map_bytes": sum(len(m.data) for m in r.result.maps),
            "positive_probability": round(r.result.positive_probability, 4),
        }
        for r in response.results
    ]


def _grpc_garbage(client: ExplainerClient) -> str:
    try:
        client.explain(b"this is no image", timeout_s=60)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "OK"


def _http(base: str, token: str, image: bytes) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    dicom = {**auth, "Content-Type": "application/dicom"}
    answer = requests.post(f"{base}/v1/explain", data=image, headers=dicom, timeout=300)
    results = answer.json().get("results", [])
    garbage = requests.post(
        f"{base}/v1/explain", data=b"this is no image", headers=dicom, timeout=60
    )
    ready = requests.get(f"{base}/readyz", timeout=30)
    return {
        "status": answer.status_code,
        "results": [
            {
                "model": r["model"],
                "code": r["status"]["code"],
                "maps": len((r.get("result") or {}).get("maps", [])),
            }
            for r in results
        ],
        "garbage_status": garbage.status_code,
        "readyz": {"status": ready.status_code, **ready.json()},
    }


def _wait_ready(base: str, expect: int, timeout_s: float) -> dict[str, Any]:
    """/readyz until ``expect`` models are ready (TorchServe's /ping passes while they load)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = requests.get(f"{base}/readyz", timeout=30)
        body = {"status": answer.status_code, **answer.json()}
        if len(body.get("models", [])) >= expect or time.monotonic() > deadline:
            return body
        time.sleep(2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--grpc", default="127.0.0.1:50051")
    parser.add_argument("--http", default="http://127.0.0.1:8000")
    parser.add_argument("--expect-models", type=int, default=1)
    parser.add_argument("--ready-timeout-s", type=float, default=600)
    args = parser.parse_args()
    image, token = args.image.read_bytes(), args.token_file.read_text().strip()
    ready = _wait_ready(args.http, args.expect_models, args.ready_timeout_s)
    if len(ready.get("models", [])) < args.expect_models:
        json.dump({"not_ready": ready}, sys.stdout)
        return 0
    with ExplainerClient(args.grpc, token=token) as client:
        listed = client._stub.ListModels(
            epb.ListModelsRequest(), timeout=30, metadata=(("authorization", f"Bearer {token}"),)
        )
        report = {
            "models": sorted(m.name for m in listed.models if m.ready),
            "unlisted": [(u.backend, u.reason) for u in listed.unlisted_backends],
            "grpc": _grpc_results(client, image),
            "grpc_garbage": _grpc_garbage(client),
            "health": client.health(),
        }
    report["http"] = _http(args.http, token, image)
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
