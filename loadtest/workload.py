"""What one simulated user does next: the task (by weight), the image (in turn), the model.

Both users (gRPC and HTTP) draw from a :class:`Workload`, so the two protocols see the same
mix. Each user has its own seeded random stream and starts at its own image.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from loadtest.images import TestImage
from loadtest.scenario import Scenario

__all__ = ["Workload"]


class Workload:
    def __init__(self, scenario: Scenario, images: Sequence[TestImage], seed: int) -> None:
        if not images:
            raise ValueError("a workload needs at least one image")
        self.scenario = scenario
        self.images = list(images)
        self._rng = random.Random(seed)
        self._next_image = seed % len(self.images)
        weighted = scenario.weighted_tasks()
        self._tasks = [task for task, _ in weighted]
        self._weights = [weight for _, weight in weighted]
        self.ready_models: tuple[str, ...] = ()

    def next_task(self) -> str:
        return self._rng.choices(self._tasks, weights=self._weights)[0]

    def next_image(self) -> TestImage:
        image = self.images[self._next_image]
        self._next_image = (self._next_image + 1) % len(self.images)
        return image

    def pick_model(self) -> str | None:
        """A model for `explain one`: from the scenario's pool, else from the ready models."""
        pool = self.scenario.one_model_pool or self.ready_models
        return self._rng.choice(pool) if pool else None

    def wait_s(self) -> float:
        low, high = self.scenario.wait_s
        return self._rng.uniform(low, high)
