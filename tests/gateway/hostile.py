"""The hostile side of the live fuzz suite: a gateway over the session's real TorchServe, what
an answer may be (a client error naming the problem, or a documented success), the per-class
tally of outcomes, and a check that no TorchServe worker died."""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence

import grpc
import numpy as np
import requests
from PIL import Image

from ptxplain.errors import Code
from ptxplain.v1 import explainer_pb2 as epb
from services.gateway import BackendConfig, ExplainerClient, GatewayConfig, RunningGateway
from services.torchserve import management_client
from tests.conftest import LIVE_ARCHS, LiveTorchServe
from tests.gateway.conftest import LoopThread

__all__ = ["HostileStack", "Tally", "hostile_stack", "png", "raw_explain"]

EXPLAIN = "/ptxplain.v1.Explainer/Explain"
# A per-model result may be: answered, or refused for the request's own sake.
MODEL_CODES = {"OK", "INVALID_ARGUMENT"}
# A whole call may be refused for the request's sake; RESOURCE_EXHAUSTED only where documented
# (a message over grpc's own size cap).
CALL_CODES = {"INVALID_ARGUMENT"}
HTTP_CLIENT_ERRORS = {400, 403, 404, 405, 408, 413, 422}
MAX_MESSAGE = 1024


def png(height: int = 48, width: int = 40, seed: int = 0, mode: str = "L") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (height, width) if mode in ("L", "I;16") else (height, width, len(mode))
    dtype = np.uint16 if mode == "I;16" else np.uint8
    pixels = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


class Tally:
    """Hostile inputs tried per class and what came back (printed at the end of the run)."""

    def __init__(self) -> None:
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )

        self.notes: dict[str, list[str]] = collections.defaultdict(list)

    def add(self, kind: str, outcome: str) -> None:
        self.counts[kind][outcome] += 1

    def note(self, kind: str, text: str) -> None:
        """A measurement rather than an outcome."""
        self.notes[kind].append(text)

    def lines(self) -> dict[str, str]:
        lines = {
            f"fuzz {kind}": f"{sum(c.values())} tried: "
            + ", ".join(f"{k} {v}" for k, v in c.most_common())
            for kind, c in sorted(self.counts.items())
        }
        lines.update({kind: ", ".join(texts) for kind, texts in sorted(self.notes.items())})
        return lines

    def write(self, path: str | None) -> None:
        if path:
            with open(path, "a") as out:
                counts = {k: dict(v) for k, v in self.counts.items()}
                json.dump({"outcomes": counts, "measured": self.notes}, out)
                out.write("\n")


@dataclasses.dataclass
class HostileStack:
    running: RunningGateway
    client: ExplainerClient
    channel: grpc.Channel
    torchserve: LiveTorchServe
    tally: Tally
    pids: Mapping[str, tuple[int, ...]]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.running.http_port}"

    def worker_pids(self) -> dict[str, tuple[int, ...]]:
        with management_client(self.torchserve.config) as management:
            return {m: management.describe(m).worker_pids for m in LIVE_ARCHS}

    def assert_no_worker_died(self) -> None:
        assert self.worker_pids() == self.pids, "a TorchServe worker died (its pid changed)"

    # -- one hostile request, checked and counted ------------------------------------------------

    def grpc_call(
        self,
        kind: str,
        image: bytes,
        models: Sequence[str] = ("resnet18",),
        options: epb.ExplainOptions | None = None,
        allowed: set[str] = CALL_CODES,
    ) -> str:
        try:
            response, _ = self.client.explain(image, list(models), options, timeout_s=60)
        except grpc.RpcError as exc:
            return self._call_failed(kind, exc, allowed)
        codes = {Code(r.status.code).name for r in response.results}
        assert codes <= MODEL_CODES, [(r.model, r.status.message) for r in response.results]
        for result in response.results:
            assert len(result.status.message) <= MAX_MESSAGE and result.status.message.isascii()
        outcome = "OK" if codes == {"OK"} else "per-model INVALID_ARGUMENT"
        self.tally.add(kind, f"grpc {outcome}")
        return outcome

    def raw_grpc(self, kind: str, body: bytes) -> str:
        """A request body that need not be an ExplainRequest at all."""
        try:
            raw_explain(self.channel)(body, timeout=60)
        except grpc.RpcError as exc:
            return self._call_failed(kind, exc, CALL_CODES)
        self.tally.add(kind, "grpc OK")
        return "OK"

    def _call_failed(self, kind: str, exc: grpc.RpcError, allowed: set[str]) -> str:
        code, details = exc.code().name, exc.details() or ""
        assert code in allowed, f"{kind}: {code} {details[:300]}"
        assert details and len(details) <= MAX_MESSAGE and details.isascii(), details[:300]
        self.tally.add(kind, f"grpc {code}")
        return code

    def http_call(
        self,
        kind: str,
        data: bytes,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        answer = requests.post(
            f"{self.http}/v1/explain",
            params=params or {"models": "resnet18"},
            data=data,
            headers={"Content-Type": "application/octet-stream", **(headers or {})},
            timeout=60,
        )
        body = answer.json()
        if answer.status_code == 200:
            codes = {r["status"]["code"] for r in body["results"]}
            assert codes <= MODEL_CODES, body["results"]
        else:
            assert answer.status_code in HTTP_CLIENT_ERRORS, (answer.status_code, body)
            message = body["error"]["message"]
            assert message and len(message) <= MAX_MESSAGE and message.isascii()
        self.tally.add(kind, f"http {answer.status_code}")
        return answer.status_code


def raw_explain(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(EXPLAIN, request_serializer=None, response_deserializer=None)


def hostile_stack(torchserve: LiveTorchServe, loop_thread: LoopThread) -> Iterator[HostileStack]:
    """A gateway over every live model; tallies printed with the session's timings."""
    from tests.conftest import _TIMINGS

    ts = torchserve.config
    config = GatewayConfig(
        backends=(
            BackendConfig(
                name="main",
                grpc=ts.grpc_inference_target,
                management=ts.management_url,
                models=LIVE_ARCHS,
                key_file=ts.key_file,
            ),
        ),
        grpc_port=0,
        http_port=0,
        catalog_refresh_s=1.0,
    )
    running = loop_thread.start_gateway(config)
    target = f"127.0.0.1:{running.grpc_port}"
    client = ExplainerClient(target)
    channel = grpc.insecure_channel(target)
    stack = HostileStack(running, client, channel, torchserve, Tally(), {})
    stack.pids = stack.worker_pids()
    try:
        yield stack
    finally:
        _TIMINGS.update(stack.tally.lines())
        stack.tally.write(os.environ.get("PTXPLAIN_FUZZ_REPORT"))
        channel.close()
        client.close()
        loop_thread.run(running.stop(0))
