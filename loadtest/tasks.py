"""The scenario's three tasks, shared by the gRPC and the HTTP user.

Each user class supplies the transport: ``_explain(name, models)``, ``list_models()`` and
``_no_model(name, detail)`` (records a request that could not be sent).
"""

from __future__ import annotations

from collections.abc import Callable

from loadtest.workload import Workload

__all__ = ["ScenarioTasks"]


class ScenarioTasks:
    """Mixin (Locust sees only its users' own @task methods, which call ``take_turn``): one task a turn, picked by the scenario's weights — explain with every model, with one, or list models."""

    workload: Workload

    def take_turn(self) -> None:
        actions: dict[str, Callable[[], None]] = {
            "explain all": self.explain_all,
            "explain one": self.explain_one,
            "list models": self.list_models,
        }
        actions[self.workload.next_task()]()

    def explain_all(self) -> None:
        self._explain("explain all", [])

    def explain_one(self) -> None:
        model = self.workload.pick_model()
        if model is None:
            self._no_model("explain one", "no ready model")
            return
        self._explain("explain one", [model])

    def list_models(self) -> None:
        raise NotImplementedError

    def _explain(self, name: str, models: list[str]) -> None:
        raise NotImplementedError

    def _no_model(self, name: str, detail: str) -> None:
        raise NotImplementedError
