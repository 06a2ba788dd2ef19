"""One CLI vocabulary for every command that calls the gateway (ptxplain/cli/client_flags.py):
shared names and defaults, old names kept as warning aliases, addresses in host:port and URL
forms, and connection failures that say what to check — against a real gateway."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptxplain.cli import SUBCOMMANDS, _parser, main
from ptxplain.cli.client_flags import grpc_address, http_url, token, unreachable_error
from ptxplain.errors import ConfigError
from ptxplain.protos import REPO_ROOT
from services.gateway import RunningGateway
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import FakeMetadata, FakeModel, FakeTorchServe, gateway_config, png_bytes


def _subparser(name: str) -> argparse.ArgumentParser:
    choices = next(
        a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    return choices[name]


def _parse(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(list(argv))


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_help_shows_every_default(name: str) -> None:
    parser = _subparser(name)
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        default = action.default
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if default in (None, argparse.SUPPRESS) or default is False or default in ("", []):
            continue
        shown = str(default)
        if isinstance(default, Path) and default.is_absolute():  # shown from the checkout
            shown = str(default.relative_to(REPO_ROOT))
        if isinstance(default, float) and f"{default:g}" in text:  # "(default: 10)" for 10.0
            shown = f"{default:g}"
        assert " ".join(shown.split()) in text, f"{name} {action.option_strings[0]}: {shown}"


def test_version_names_ptxplain_torch_and_torchserve(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("ptxplain ") and "torch " in out and "torchserve " in out


GATEWAY_COMMANDS = {
    "explain": ["explain", "x.png"],
    "evaluate": ["evaluate", "--data", "d", "--out", "o"],
    "loadtest": ["loadtest"],
}


@pytest.mark.parametrize("command", sorted(GATEWAY_COMMANDS))
def test_gateway_commands_share_names_and_defaults(command: str) -> None:
    args = _parse(*GATEWAY_COMMANDS[command])
    assert args.gateway == "127.0.0.1:50051" and args.token_env == "PTXPLAIN_GATEWAY_TOKEN"
    assert args.token_file is None and args.tls_ca is None
    assert args.deadline == (None if command == "loadtest" else 120.0)  # loadtest: the scenario's
    if command != "explain":
        assert args.gateway_http == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("command", "old", "text", "dest", "value", "new"),
    [
        ("explain", "--timeout", "7", "deadline", 7.0, "--deadline"),
        ("evaluate", "--timeout-s", "9", "deadline", 9.0, "--deadline"),
        ("loadtest", "--explain-deadline", "3", "deadline", 3.0, "--deadline"),
        ("loadtest", "--grpc-target", "gw:1", "gateway", "gw:1", "--gateway"),
        ("loadtest", "--http-url", "http://gw:2", "gateway_http", "http://gw:2", "--gateway-http"),
        ("loadtest", "--ca-file", "ca.pem", "tls_ca", Path("ca.pem"), "--tls-ca"),
    ],
)
def test_old_flag_names_still_work_and_warn(
    command: str,
    old: str,
    text: str,
    dest: str,
    value: object,
    new: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = _parse(*GATEWAY_COMMANDS[command], old, text)
    assert getattr(args, dest) == value
    assert f"warning: {old} is deprecated; use {new}" in capsys.readouterr().err


def test_old_flag_names_are_hidden_from_help() -> None:
    text = _subparser("loadtest").format_help()
    assert "--grpc-target" not in text and "--gateway-http" in text


def test_loadtest_passes_the_new_names_to_locust(tmp_path: Path) -> None:
    from ptxplain.cli.loadtest import locust_command

    argv = ["loadtest", "--gateway", "grpc://gw:7", "--gateway-http", "gw:8"]
    args = _parse(*argv, "--tls-ca", "ca.pem", "--deadline", "4")
    joined = " ".join(locust_command(args, tmp_path / "run"))
    assert "--grpc-target gw:7" in joined and "--host http://gw:8" in joined
    assert f"--ca-file {Path('ca.pem').absolute()}" in joined and "--explain-deadline 4.0" in joined


def test_evaluate_takes_an_http_url_in_gateway_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ptxplain.cli.evaluate import _address

    args = _parse("evaluate", "--data", "d", "--out", "o", "--http", "--gateway", "http://gw:9/")
    assert _address(args) == "http://gw:9"
    assert "use --gateway-http" in capsys.readouterr().err
    args = _parse("evaluate", "--data", "d", "--out", "o", "--gateway", "grpc://gw:5")
    assert _address(args) == "gw:5"


@pytest.mark.parametrize(
    ("text", "target", "tls"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051", False),
        ("gateway", "gateway:50051", False),
        ("grpc://gw.example:443", "gw.example:443", False),
        ("grpcs://gw.example", "gw.example:50051", True),
        ("http://127.0.0.1:9000/", "127.0.0.1:9000", False),
        ("https://gw.example:443", "gw.example:443", True),
        ("[::1]:50051", "[::1]:50051", False),
        ("grpc://[::1]:7", "[::1]:7", False),
    ],
)
def test_grpc_addresses_in_host_port_and_url_forms(text: str, target: str, tls: bool) -> None:
    assert grpc_address(text) == type(grpc_address(text))(target, tls)


def test_http_addresses_and_bad_forms() -> None:
    assert http_url("127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert http_url("gw") == "http://gw:8000"
    assert http_url("https://gw:8443/") == "https://gw:8443"
    with pytest.raises(ConfigError, match="gRPC addresses go to --gateway"):
        http_url("grpc://gw:50051")
    with pytest.raises(ConfigError, match="expected host:port"):
        grpc_address("gw:port")
    with pytest.raises(ConfigError, match="has no path"):
        grpc_address("http://gw:8000/v1/explain")


def test_token_from_file_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "from-env")
    assert token(_parse("explain", "x", "--token-env", "MY_TOKEN")) == "from-env"
    path = tmp_path / "token"
    path.write_text("from-file\n")
    assert token(_parse("explain", "x", "--token-env", "MY_TOKEN", "--token-file", str(path))) == (
        "from-file"
    )
    path.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        token(_parse("explain", "x", "--token-file", str(path)))


# -- against a real gateway ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def running() -> Iterator[RunningGateway]:
    thread = LoopThread()
    fake = FakeTorchServe({"fast": FakeModel()})
    thread.run(fake.start())
    gateway = thread.start_gateway(
        gateway_config({"main": (fake.target, ("fast",))}), FakeMetadata()
    )
    yield gateway
    thread.run(gateway.stop(0))
    thread.run(fake.stop())
    thread.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_explain_accepts_the_url_form(
    running: RunningGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes())
    address = f"grpc://127.0.0.1:{running.grpc_port}"
    assert main(["explain", str(image), "--gateway", address, "--out", str(tmp_path / "o")]) == 0
    assert "fast" in capsys.readouterr().out


def test_explain_at_the_http_port_says_which_port_is_grpc(
    running: RunningGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes())
    wrong = f"127.0.0.1:{running.http_port}"
    assert main(["explain", str(image), "--gateway", wrong, "--deadline", "5"]) == 2
    err = capsys.readouterr().err
    assert f"{wrong} is the gateway's HTTP port, not its gRPC port" in err
    assert "--gateway 127.0.0.1:50051" in err


def test_explain_where_nothing_listens_says_what_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes())
    port = _free_port()
    assert main(["explain", str(image), "--gateway", f"127.0.0.1:{port}", "--deadline", "3"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the gateway at 127.0.0.1:{port}" in err and "make deploy" in err


def test_http_client_at_the_grpc_port_says_which_port_is_http(running: RunningGateway) -> None:
    error = unreachable_error(f"127.0.0.1:{running.grpc_port}", "http", "connection aborted")
    assert "is the gateway's gRPC port, not its HTTP port" in str(error)
    assert f"--gateway 127.0.0.1:{running.grpc_port}" in str(error)


def test_loadtest_warns_about_addresses_that_do_not_answer(running: RunningGateway) -> None:
    from ptxplain.cli.loadtest import _unreachable

    swapped = _parse(
        "loadtest",
        "--gateway",
        f"127.0.0.1:{running.http_port}",
        "--gateway-http",
        f"127.0.0.1:{running.grpc_port}",
    )
    grpc_problem, http_problem = _unreachable(swapped)
    assert "is the gateway's HTTP port, not its gRPC port" in grpc_problem
    assert "is the gateway's gRPC port, not its HTTP port" in http_problem
    right = _parse(
        "loadtest",
        "--gateway",
        f"127.0.0.1:{running.grpc_port}",
        "--gateway-http",
        f"127.0.0.1:{running.http_port}",
    )
    assert _unreachable(right) == []
