"""The few management-API calls ptxplain needs: list models and describe their workers.

Model registration over the API is off (``enable_model_api=false``); the model store is the
only source of models. Calls carry the management key and refresh it like the inference key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ptxplain.errors import BackendError, UnknownModelError
from services.torchserve.auth import TokenSource, token_source
from services.torchserve.client import RestClient
from services.torchserve.config import TorchServeConfig

__all__ = ["ManagementClient", "ModelStatus", "management_client"]


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    """One registered model and the states of its workers."""

    name: str
    version: str
    batch_size: int
    max_batch_delay_ms: int
    worker_states: tuple[str, ...]
    worker_pids: tuple[int, ...] = ()
    # Per worker: whether TorchServe put it on a GPU (the archive's deviceType, its hardware).
    worker_gpus: tuple[bool, ...] = ()

    @property
    def ready_workers(self) -> int:
        return sum(state == "READY" for state in self.worker_states)

    @classmethod
    def from_description(cls, raw: dict[str, Any]) -> ModelStatus:
        return cls(
            name=str(raw.get("modelName", "")),
            version=str(raw.get("modelVersion", "")),
            batch_size=int(raw.get("batchSize", 0)),
            max_batch_delay_ms=int(raw.get("maxBatchDelay", 0)),
            worker_states=tuple(str(w.get("status", "")) for w in raw.get("workers", [])),
            worker_pids=tuple(int(w.get("pid", -1)) for w in raw.get("workers", [])),
            worker_gpus=tuple(bool(w.get("gpu", False)) for w in raw.get("workers", [])),
        )


class ManagementClient:
    """``GET /models`` and ``GET /models/{name}`` on the management port."""

    def __init__(self, base_url: str, token: TokenSource | None, timeout_s: float = 10.0) -> None:
        self._rest = RestClient(base_url, token, timeout_s=timeout_s, pool_size=2)

    def _get_json(self, path: str) -> Any:
        answer = self._rest.request("GET", path, timeout=self._rest.timeout_s)
        if answer.status_code == 404:
            raise UnknownModelError(f"TorchServe has no model at {path}")
        if answer.status_code != 200:
            raise BackendError(
                f"TorchServe management {path} answered {answer.status_code}: {answer.text[:200]}"
            )
        return answer.json()

    def list_models(self) -> list[str]:
        return [str(m["modelName"]) for m in self._get_json("/models").get("models", [])]

    def describe(self, model: str) -> ModelStatus:
        described = self._get_json(f"/models/{model}")
        return ModelStatus.from_description(described[0])

    def close(self) -> None:
        self._rest.close()

    def __enter__(self) -> ManagementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def management_client(config: TorchServeConfig) -> ManagementClient:
    return ManagementClient(config.management_url, token_source(config, "management"))
