"""Every subcommand has a --help that explains it, and errors exit 2 with a message."""

from __future__ import annotations

import pytest

from ptxplain.cli import SUBCOMMANDS, main


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: ptxplain {name}" in out and len(out.splitlines()) > 3


def test_top_level_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


def test_archs_json_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["archs", "--json", "--no-stats"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"resnet50", "vit_l16", "vgg19"} <= {row["name"] for row in rows}
    assert all("target_layer" in row and "input_size" in row for row in rows)


def test_errors_exit_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "engine", "--archs", "resnet7", "--repeats", "1"]) == 2
    assert "resnet7" in capsys.readouterr().err
