"""Run tritonclient calls against a server and print what came back, as JSON.

Run as its own process (tests/gateway/triton.py does): tritonclient's stubs and the gateway's
both define the protocol's ``inference.*`` messages, and one process's protobuf pool holds each
name once — so the real client runs beside the gateway, as a user's client would.

    python triton_script.py PLAN.json       (prints one JSON answer per call, as a list)

A plan: ``{"transport": "http" | "grpc", "url": "host:port", "headers": {...},
"image": "PATH", "calls": [{"op": "live" | "ready" | "server_metadata" | "model_ready" |
"model_metadata" | "infer", "model": ..., "parameters": {...}, "outputs": [...],
"binary": true}]}``. Arrays come back as base64 of their bytes with dtype and shape; a failed
call as ``{"error": {"status": ..., "message": ...}}``.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import InferenceServerException


def _array(value: np.ndarray) -> dict[str, Any]:
    return {
        "dtype": value.dtype.str,
        "shape": list(value.shape),
        "data": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode(),
    }


def _infer(module: Any, client: Any, plan: dict[str, Any], call: dict[str, Any]) -> Any:
    tensor = module.InferInput("image", [1], "BYTES")
    image = Path(plan["image"]).read_bytes()
    tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
    kwargs: dict[str, Any] = {"headers": plan.get("headers") or None}
    if call.get("parameters"):
        kwargs["parameters"] = call["parameters"]
    if call.get("outputs"):
        if plan["transport"] == "http":
            binary = call.get("binary", True)
            kwargs["outputs"] = [
                module.InferRequestedOutput(n, binary_data=binary) for n in call["outputs"]
            ]
        else:
            kwargs["outputs"] = [module.InferRequestedOutput(n) for n in call["outputs"]]
    result = client.infer(call["model"], [tensor], **kwargs)
    response = result.get_response(as_json=True) if plan["transport"] == "grpc" else None
    response = response or result.get_response()
    names = [o["name"] for o in response["outputs"]]
    return {"response": response, "arrays": {n: _array(result.as_numpy(n)) for n in names}}


def _call(module: Any, client: Any, plan: dict[str, Any], call: dict[str, Any]) -> Any:
    headers = plan.get("headers") or None
    op = call["op"]
    grpc = plan["transport"] == "grpc"
    if op == "live":
        return client.is_server_live(headers=headers)
    if op == "ready":
        return client.is_server_ready(headers=headers)
    if op == "model_ready":
        return client.is_model_ready(call["model"], headers=headers)
    if op == "server_metadata":
        return client.get_server_metadata(headers=headers, **({"as_json": True} if grpc else {}))
    if op == "model_metadata":
        extra = {"as_json": True} if grpc else {}
        return client.get_model_metadata(call["model"], headers=headers, **extra)
    return _infer(module, client, plan, call)


def main(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    if plan["transport"] == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module  # type: ignore[no-redef]
    client = module.InferenceServerClient(plan["url"])
    answers = []
    for call in plan["calls"]:
        try:
            answers.append({"ok": _call(module, client, plan, call)})
        except InferenceServerException as exc:
            answers.append({"error": {"status": exc.status(), "message": exc.message()}})
    client.close()
    print(json.dumps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
