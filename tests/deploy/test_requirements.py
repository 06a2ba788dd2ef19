"""services/containers/requirements.py: pinned lines from pyproject.toml for image builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.containers.requirements import canonical_name, main, project_requirements, select
from tests.deploy.support import REPO


def test_reads_the_pinned_lines() -> None:
    requirements = project_requirements(REPO / "pyproject.toml")
    assert select(requirements, ["torch", "PyYAML", "grpcio_health_checking"])[0].startswith(
        "torch=="
    )
    assert len(select(requirements, None)) == len(requirements)


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not-a-dependency"):
        select({"torch": "torch==1"}, ["not-a-dependency"])


def test_canonical_names() -> None:
    assert canonical_name("Grpcio_Health.Checking") == "grpcio-health-checking"


def test_main_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["torch==2.0", "pillow"]\n')
    assert main([str(pyproject), "--only", "pillow"]) == 0
    assert capsys.readouterr().out == "pillow\n"
    assert main([str(pyproject), "--only", "numpy"]) == 2
    assert "numpy" in capsys.readouterr().err
