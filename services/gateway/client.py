"""A blocking client for the gateway's gRPC API (the CLI, benchmarks and tests use it).

Its message-size limits match the gateway's defaults (32 MiB image + envelope out, 256 MiB of
results in); failures raise ``grpc.RpcError`` with the gateway's status and message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ptxplain.errors import BackendError, BackendTimeoutError
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import explainer_pb2_grpc as egrpc
from services.gateway.config import DEFAULT_MAX_RESPONSE_BYTES, ENVELOPE_BYTES
from services.gateway.logs import REQUEST_ID_HEADER
from services.torchserve.config import GATEWAY_IMAGE_CAP

__all__ = ["ExplainerClient"]


class ExplainerClient:
    """One reused channel to a gateway."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        root_certificates: bytes | None = None,
        tls: bool = False,
        max_image_bytes: int = GATEWAY_IMAGE_CAP,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.target = target
        options = [
            ("grpc.max_send_message_length", max_image_bytes + ENVELOPE_BYTES),
            ("grpc.max_receive_message_length", max_response_bytes),
        ]
        if root_certificates is not None or tls:  # tls without roots: the system's
            credentials = grpc.ssl_channel_credentials(root_certificates)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._stub = egrpc.ExplainerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def _call_metadata(self, request_id: str | None) -> tuple[tuple[str, str], ...]:
        return self._metadata + (((REQUEST_ID_HEADER, request_id),) if request_id else ())

    def explain(
        self,
        image: bytes,
        models: Sequence[str] = (),
        options: epb.ExplainOptions | None = None,
        *,
        timeout_s: float | None = 120.0,
        request_id: str | None = None,
    ) -> tuple[epb.ExplainResponse, str]:
        """Every model's result, and the request id the gateway returned."""
        request = epb.ExplainRequest(image=image, models=list(models), options=options)
        response, call = self._stub.Explain.with_call(
            request, timeout=timeout_s, metadata=self._call_metadata(request_id)
        )
        returned = dict(call.initial_metadata() or ()).get(REQUEST_ID_HEADER, "")
        return response, str(returned)

    def stream(
        self,
        image: bytes,
        models: Sequence[str] = (),
        options: epb.ExplainOptions | None = None,
        *,
        timeout_s: float | None = 120.0,
    ) -> Iterator[epb.ModelResult]:
        """Each model's result as soon as the gateway has it."""
        request = epb.ExplainRequest(image=image, models=list(models), options=options)
        yield from self._stub.ExplainStream(request, timeout=timeout_s, metadata=self._metadata)

    def list_models(self, *, timeout_s: float = 10.0) -> list[epb.ModelInfo]:
        response = self._stub.ListModels(
            epb.ListModelsRequest(), timeout=timeout_s, metadata=self._metadata
        )
        return list(response.models)

    def health(self, service: str = "", *, timeout_s: float = 5.0) -> str:
        """The health service's status name (SERVING, NOT_SERVING, ...)."""
        answer = self._health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

    def wait_serving(self, timeout_s: float = 60.0) -> None:
        """Block until the gateway reports SERVING; raises when it does not in time."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                last = self.health(timeout_s=2.0)
                if last == "SERVING":
                    return
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    raise BackendError(f"gateway {self.target}: {last}") from exc
            time.sleep(0.2)
        raise BackendTimeoutError(
            f"gateway {self.target} not SERVING after {timeout_s:.0f}s ({last})"
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ExplainerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
