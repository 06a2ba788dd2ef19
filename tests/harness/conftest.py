"""Shared fixtures for the harness tests: one small phantom set, generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.phantom.generate import PhantomConfig, PhantomResult, generate_phantom

PHANTOM_CONFIG = PhantomConfig(
    n=40, seed=3, size=96, positive_fraction=0.5, confounder_fraction=0.5, compressed_fraction=0.5
)


@pytest.fixture(scope="session")
def phantom_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhantomResult]:
    """(folder, generator truth) of a 40-image 96x96 phantom. Read it with a ``state_dir``
    under the test's own tmp_path so tests do not share pseudonym keys or split files."""
    root = tmp_path_factory.mktemp("phantom") / "set"
    return root, generate_phantom(PHANTOM_CONFIG, root)
