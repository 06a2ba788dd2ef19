"""Replay the test split through an explainer client with bounded concurrency, appending each
finished image to the :class:`~harness.store.ResultsStore` as it arrives.

The client is anything with ``explain(image_id, image_bytes) -> FanOutAnswer``: the real
gateway client (:mod:`harness.evaluate.client`) or a fake in unit tests. A request that fails
as a whole for a transient reason (gateway down, deadline, shed: ``BackendError`` /
``OverloadedError``) is not stored, so a later run retries it; any other error stops the run
(what finished is kept); per-model errors
inside an answer are stored with their code, and transient ones (unavailable, deadline, shed)
are retried by a later run too. After ``max_consecutive_failures`` whole-request failures in a
row the replay stops early and says so: the images it did finish are kept.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol

from harness.data.dataset import ImageRecord
from harness.store import ImageResult, ModelAnswer, ResultsStore
from ptxplain.errors import BackendError, Code, InvalidOptionError, OverloadedError

__all__ = [
    "ExplainClient",
    "FanOutAnswer",
    "ReplayConfig",
    "ReplayInterrupted",
    "ReplayOutcome",
    "pending",
    "replay",
]


@dataclasses.dataclass(frozen=True)
class FanOutAnswer:
    """Every model's answer to one image, and the client-side time of the whole fan-out."""

    answers: dict[str, ModelAnswer]
    client_ms: float


class ExplainClient(Protocol):
    def explain(self, image_id: str, image: bytes) -> FanOutAnswer: ...


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    models: tuple[str, ...]
    concurrency: int = 4
    retry_failed: bool = True
    max_consecutive_failures: int = 20
    progress: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 256:
            raise InvalidOptionError(f"--concurrency must be in 1..256, got {self.concurrency}")
        if not self.models:
            raise InvalidOptionError("no models to evaluate (--models, or the gateway's list)")


@dataclasses.dataclass(frozen=True)
class ReplayOutcome:
    sent: int  # images sent in this run
    stored: int  # of those, answered and appended
    already_done: int  # skipped: finished by an earlier run
    failed: tuple[tuple[str, str], ...]  # (image id, why) for whole-request failures
    aborted: str  # why the run stopped early; "" when it went through
    elapsed_s: float

    @property
    def throughput(self) -> float:
        """Images answered per second of wall time in this run."""
        return self.stored / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["failed"] = [{"image_id": i, "error": e} for i, e in self.failed]
        data["throughput_images_per_s"] = self.throughput
        return data


class ReplayInterrupted(KeyboardInterrupt):
    """Ctrl-C during a replay: what was stored before it (the rerun resumes from there)."""

    def __init__(self, outcome: ReplayOutcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome


def pending(
    records: Sequence[ImageRecord], done: dict[str, ImageResult], config: ReplayConfig
) -> list[ImageRecord]:
    """Records not finished yet (or, with ``retry_failed``, with a transient model failure)."""
    return [
        r
        for r in records
        if r.image_id not in done
        or (config.retry_failed and done[r.image_id].needs_retry(config.models))
    ]


def _complete(answer: FanOutAnswer, models: tuple[str, ...]) -> dict[str, ModelAnswer]:
    """The answers, with a stated error for every wanted model the gateway left out."""
    answers = dict(answer.answers)
    for model in models:
        answers.setdefault(
            model,
            ModelAnswer(
                model, code=int(Code.UNAVAILABLE), message="absent from the gateway's answer"
            ),
        )
    return answers


def _explain(client: ExplainClient, record: ImageRecord) -> tuple[float, FanOutAnswer]:
    started = time.time()
    return started, client.explain(record.image_id, record.path.read_bytes())


def _progress(total: int, enabled: bool) -> object:
    from tqdm import tqdm

    return tqdm(total=total, desc="evaluate", unit="img", file=sys.stderr, disable=not enabled)


class _Window:
    """Keeps at most ``size`` requests in flight, fed from an iterator of records."""

    def __init__(self, pool: ThreadPoolExecutor, client: ExplainClient, size: int) -> None:
        self.pool, self.client, self.size = pool, client, size
        self.flight: dict[Future[tuple[float, FanOutAnswer]], ImageRecord] = {}

    def fill(self, source: Iterator[ImageRecord]) -> None:
        while len(self.flight) < self.size:
            record = next(source, None)
            if record is None:
                return
            self.flight[self.pool.submit(_explain, self.client, record)] = record

    def finished(self) -> list[tuple[Future[tuple[float, FanOutAnswer]], ImageRecord]]:
        done, _ = wait(list(self.flight), return_when=FIRST_COMPLETED)
        return [(future, self.flight.pop(future)) for future in done]

    def cancel(self) -> None:
        for future in self.flight:
            future.cancel()


def replay(
    records: Sequence[ImageRecord],
    client: ExplainClient,
    store: ResultsStore,
    config: ReplayConfig,
) -> ReplayOutcome:
    """Send every pending record; append each answer as it arrives."""
    todo = pending(records, store.load(), config)
    started = time.monotonic()
    stored, failed, streak, aborted = 0, [], 0, ""
    bar = _progress(len(todo), config.progress)
    source = iter(todo)
    interrupted = False
    with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
        window = _Window(pool, client, config.concurrency)
        try:
            window.fill(source)
            while window.flight:
                for future, record in window.finished():
                    try:
                        began, answer = future.result()
                    except (BackendError, OverloadedError) as exc:
                        failed.append((record.image_id, str(exc)))
                        streak += 1
                    else:
                        answers = _complete(answer, config.models)
                        store.append(
                            ImageResult(
                                record.image_id, int(record.label), answers, answer.client_ms, began
                            )
                        )
                        stored, streak = stored + 1, 0
                    bar.update(1)  # type: ignore[attr-defined]
                if streak >= config.max_consecutive_failures:
                    aborted = f"{streak} requests in a row failed (last: {failed[-1][1]})"
                    window.cancel()
                    break
                window.fill(source)
        except KeyboardInterrupt:
            window.cancel()  # what is not sent yet; calls in flight end, unstored
            interrupted, aborted = True, "interrupted"
    bar.close()  # type: ignore[attr-defined]
    elapsed = time.monotonic() - started
    sent = stored + len(failed)
    outcome = ReplayOutcome(sent, stored, len(records) - len(todo), tuple(failed), aborted, elapsed)
    if interrupted:
        raise ReplayInterrupted(outcome)
    return outcome
