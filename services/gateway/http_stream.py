"""The HTTP twin of ``ExplainStream``: ``POST /v1/explain/stream`` answers one JSON line per
model (``application/x-ndjson``) as each model answers, so a page can draw each result as soon
as it is ready.

The request is the one of ``POST /v1/explain`` (raw image body or JSON, the same query). Each
line is one model's result, shaped as an entry of ``/v1/explain``'s ``results``. As in the gRPC
stream, successes go out as they come and failures are held back until a first success has gone
out; when every model failed the answer is that one error, with its HTTP status (the response
only starts once a first model succeeded). The access-log line is written when the first line
goes out.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import StreamingResponse

from services.gateway.catalog import Catalog
from services.gateway.edge import ExplainCall
from services.gateway.fanout import Gateway, ModelOutcome, all_failed_error
from services.gateway.http_json import ExplainQuery, outcome_json
from services.gateway.logs import note

__all__ = ["STREAM_PATH", "install_explain_stream"]

STREAM_PATH = "/v1/explain/stream"
NDJSON = "application/x-ndjson"
# Reads (image, models named in a JSON body) from a request, refusing bodies over the cap.
CallPreparer = Callable[[Request, ExplainQuery], Awaitable[ExplainCall]]


def _line(outcome: ModelOutcome, catalog: Catalog) -> bytes:
    return json.dumps(outcome_json(outcome, catalog.get(outcome.model))).encode() + b"\n"


async def _until_first_success(
    outcomes: AsyncIterator[ModelOutcome], results: dict[str, str]
) -> list[ModelOutcome]:
    """The held failures and the first success, in that order; raises when every model failed."""
    held: list[ModelOutcome] = []
    async for outcome in outcomes:
        results[outcome.model] = outcome.code.name
        held.append(outcome)
        if outcome.ok:
            return [held[-1], *held[:-1]]
    failed = all_failed_error(held)
    assert failed is not None
    raise failed


async def _lines(
    first: list[ModelOutcome],
    outcomes: AsyncIterator[ModelOutcome],
    catalog: Catalog,
    results: dict[str, str],
) -> AsyncIterator[bytes]:
    try:
        for outcome in first:
            yield _line(outcome, catalog)
        async for outcome in outcomes:
            results[outcome.model] = outcome.code.name
            yield _line(outcome, catalog)
    finally:  # a client that goes away cancels the calls left
        await outcomes.aclose()  # type: ignore[attr-defined]


def install_explain_stream(app: FastAPI, gateway: Gateway, prepare: CallPreparer) -> None:
    """Add ``POST /v1/explain/stream`` to ``app`` (``prepare``: the twin's request -> call)."""

    @app.post(
        STREAM_PATH, response_class=StreamingResponse, responses={200: {"content": {NDJSON: {}}}}
    )
    async def explain_stream(
        request: Request, query: Annotated[ExplainQuery, Query()]
    ) -> StreamingResponse:
        call = await prepare(request, query)
        results: dict[str, str] = {}
        note(results=results)
        outcomes = gateway.outcomes(call)
        try:
            first = await _until_first_success(outcomes, results)
        except BaseException:
            await outcomes.aclose()  # type: ignore[attr-defined]
            raise
        body = _lines(first, outcomes, gateway.catalog, results)
        return StreamingResponse(body, media_type=NDJSON)
