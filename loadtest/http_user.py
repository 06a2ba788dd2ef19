"""A Locust user on the gateway's HTTP/JSON twin (``POST /v1/explain``, ``GET /v1/models``).

The image goes as the raw body with its content type; the models, CAM methods and the deadline
(``timeout_s``) as query parameters. The client itself waits 5 s longer than that deadline, so a
late answer shows up as the gateway's own 504, not as a client-side time-out. Calls are reported
as request type ``http`` under the task's name (``[shed]`` / ``[partly shed]`` appended for shed
answers; loadtest/outcome.py).
"""

from __future__ import annotations

import itertools
import json
from typing import Any, ClassVar
from urllib.parse import urlencode

from locust import task
from locust.contrib.fasthttp import FastHttpUser

from loadtest.images import TestImage
from loadtest.outcome import Outcome, OutcomeKind, classify_http, request_name
from loadtest.settings import RunSettings
from loadtest.tasks import ScenarioTasks
from loadtest.workload import Workload

__all__ = ["HttpExplainUser"]

_CLIENT_SLACK_S = 5.0
_USER_SEEDS = itertools.count(10_000)


class HttpExplainUser(ScenarioTasks, FastHttpUser):
    """Explain (all models / one model) and list models over HTTP, per the scenario's mix."""

    # Set by the locustfile on Locust's init event (with host, timeouts), before users start.
    settings: ClassVar[RunSettings]
    images: ClassVar[list[TestImage]] = []

    def wait_time(self) -> float:
        return self.workload.wait_s()

    def on_start(self) -> None:
        self.workload = Workload(self.settings.scenario, self.images, next(_USER_SEEDS))
        self.list_models()

    def list_models(self) -> None:
        with self.client.get(
            "/v1/models",
            name="list models",
            headers=self.settings.headers,
            catch_response=True,
        ) as response:
            outcome = classify_http(response.status_code, response.content or b"", fan_out=False)
            if not outcome.failed:
                self.workload.ready_models = _ready_models(response.content or b"")
            _report(response, "list models", outcome)

    # -- calls and reporting ------------------------------------------------------------------

    def _url(self, models: list[str]) -> str:
        scenario = self.settings.scenario
        query: dict[str, Any] = {"timeout_s": scenario.explain_deadline_s}
        if models:
            query["models"] = ",".join(models)
        if scenario.methods:
            query["methods"] = ",".join(scenario.methods)
        if scenario.logits_only:
            query["logits_only"] = "true"
        return f"/v1/explain?{urlencode(query)}"

    def _explain(self, name: str, models: list[str]) -> None:
        image = self.workload.next_image()
        headers = {**self.settings.headers, "Content-Type": image.content_type}
        # Locust documents bytes for `data` ("String/bytes") but annotates only str / dict.
        with self.client.post(
            self._url(models),
            data=image.data,  # type: ignore[arg-type]
            headers=headers,
            name=name,
            catch_response=True,
        ) as response:
            outcome = classify_http(response.status_code, response.content or b"", fan_out=True)
            _report(response, name, outcome)

    @task
    def turn(self) -> None:
        self.take_turn()

    def _no_model(self, name: str, detail: str) -> None:
        self.environment.events.request.fire(
            request_type="http",
            name=name,
            response_time=0.0,
            response_length=0,
            exception=RuntimeError(detail),
            context={},
        )


def _ready_models(body: bytes) -> tuple[str, ...]:
    try:
        models = json.loads(body).get("models", [])
        return tuple(str(m["name"]) for m in models if m.get("ready"))
    except (ValueError, AttributeError, KeyError, TypeError):
        return ()


def _report(response: Any, name: str, outcome: Outcome) -> None:
    """Rename the request by its outcome, then mark it: failure, or success (shed included)."""
    response.request_meta["request_type"] = "http"
    response.request_meta["name"] = request_name(name, outcome)
    if outcome.kind is OutcomeKind.FAILED:
        response.failure(outcome.detail)
    else:
        response.success()


def client_timeout_s(settings: RunSettings) -> float:
    """How long the HTTP client waits: the explain deadline plus a margin."""
    return settings.scenario.explain_deadline_s + _CLIENT_SLACK_S
