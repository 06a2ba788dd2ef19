"""Progress bars for long work: tqdm on stderr, only for large inputs."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

__all__ = ["progress"]

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int, desc: str, enabled: bool) -> Iterator[T]:
    """Iterate with a tqdm bar on stderr when enabled and the folder is large (>= 200)."""
    yield from tqdm(
        items, total=total, desc=desc, file=sys.stderr, disable=not enabled or total < 200
    )
