"""The two Dockerfiles: hadolint, their shape (multi-stage, slim, non-root, HEALTHCHECK), the
build context they read, and the model server's entrypoint as TorchServe's launcher parses it."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from services.containers import torchserve_properties as props
from services.containers.requirements import project_requirements, select
from tests.deploy.dockerfile import Stage, copy_sources, exec_form, read_stages, runtime_stage
from tests.deploy.dockerignore import DockerIgnore
from tests.deploy.support import DOCKERFILES, REPO, venv_tool

EXPECTED_PORTS = {"model-server": {8080, 8081, 8082, 7070, 7071}, "gateway": {50051, 8000}}


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    command = [str(venv_tool("hadolint")), "--no-color", "--failure-threshold", "info", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _runtime(name: str) -> Stage:
    return runtime_stage(DOCKERFILES[name])


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(name: str) -> None:
    result = _hadolint(DOCKERFILES[name])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n"
    )
    result = _hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3015", "DL3025"):
        assert rule in result.stdout, result.stdout


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_build_in_stages_from_a_slim_base(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    default_base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert default_base and default_base.group(1).endswith("-slim-bookworm")
    stages = read_stages(DOCKERFILES[name])
    assert len(stages) >= 2
    names = set()
    for stage in stages:
        assert stage.base == "${PYTHON_IMAGE}" or stage.base in names, stage
        names.add(stage.name)
    runtime = _runtime(name)
    copied = " ".join(runtime.all("COPY"))
    assert "--from=build" in copied, "the runtime stage takes /app from the build stage"
    assert not any(copy_sources(args) for args in runtime.all("COPY")), (
        "the runtime stage copies nothing from the context: it gets its files from `build`"
    )
    by_name = {stage.name: stage for stage in stages}
    ancestors, base = [], runtime.base
    while base in by_name:
        ancestors.append(by_name[base])
        base = by_name[base].base
    assert base == "${PYTHON_IMAGE}"
    assert "build" not in {a.name for a in ancestors}, "the runtime stage never starts from build"
    for stage in ancestors:  # at most the dependency list: the sources only reach it via build
        sources = {s for args in stage.all("COPY") for s in copy_sources(args)}
        assert sources <= {"pyproject.toml", "services/containers/requirements.py"}, stage


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_run_as_a_non_root_user_with_a_healthcheck(name: str) -> None:
    runtime = _runtime(name)
    user = runtime.last("USER")
    assert user is not None and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
    healthcheck = runtime.last("HEALTHCHECK")
    assert healthcheck is not None
    options, _, command = healthcheck.partition(" CMD ")
    assert "--start-period=" in options
    probe = exec_form(command)
    assert probe[:3] == ["python", "-m", "services.containers.healthcheck"]
    entrypoint = exec_form(runtime.last("ENTRYPOINT") or "")
    assert entrypoint[0] == "tini", "tini is PID 1: signals forwarded, zombies reaped"
    exposed = {int(p) for args in runtime.all("EXPOSE") for p in args.split()}
    assert exposed == EXPECTED_PORTS[name]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_copied_path_reaches_the_build_context(name: str) -> None:
    ignore = DockerIgnore(REPO / ".dockerignore")
    for stage in read_stages(DOCKERFILES[name]):
        for args in stage.all("COPY"):
            for source in copy_sources(args):
                path = REPO / source
                assert path.exists(), f"{name}: COPY {source}: no such path"
                files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
                assert files, f"{name}: COPY {source}: nothing to copy"
                for file in files:
                    relative = file.relative_to(REPO).as_posix()
                    assert ignore.sent(relative), f"{name}: .dockerignore drops {relative}"


def test_the_build_context_leaves_out_local_state() -> None:
    ignore = DockerIgnore(REPO / ".dockerignore")
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "model_store/resnet18.mar",
        "run/key_file.json",
        "data/x.dcm",
        "reports/loadtest/x.csv",
        "tests/conftest.py",
        "ptxplain/__pycache__/errors.cpython-311.pyc",
        "checkpoints/w.safetensors",
    ):
        assert not ignore.sent(path), path
    assert ignore.sent("services/containers/requirements.py")


def test_model_server_image_copies_every_project_package() -> None:
    copied = {
        Path(source).parts[0]
        for stage in read_stages(DOCKERFILES["model-server"])
        for args in stage.all("COPY")
        for source in copy_sources(args)
    }
    assert {"ptxplain", "handlers", "harness", "services"} <= copied


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_requirement_lists_name_pyproject_dependencies(name: str) -> None:
    requirements = project_requirements(REPO / "pyproject.toml")
    runs = " ".join(a for s in read_stages(DOCKERFILES[name]) for a in s.all("RUN"))
    lists = re.findall(r"requirements\.py pyproject\.toml --only ([^>]+)>", runs)
    assert lists, f"{name}: no `requirements.py --only` list found"
    for names in lists:
        assert select(requirements, names.split()), names


def _model_server_argv(cmd: list[str]) -> list[str]:
    entrypoint = exec_form(_runtime("model-server").last("ENTRYPOINT") or "")
    assert entrypoint[:3] == ["tini", "-g", "--"], "tini -g: SIGTERM reaches the JVM and workers"
    return entrypoint[3:] + cmd


@pytest.mark.parametrize("cmd", [["--models", "all"], ["--models", "resnet18.mar,vit_s16.mar"]])
def test_model_server_entrypoint_is_a_valid_torchserve_command(cmd: list[str]) -> None:
    from ts.arg_parser import ArgParser

    argv = _model_server_argv(cmd)
    assert argv[0] == "torchserve"
    args = ArgParser.ts_parser().parse_args(argv[1:])
    assert args.foreground and args.no_config_snapshots
    assert args.model_store == str(props.MODEL_STORE)
    assert args.models == [cmd[1]]
    image_cmd = exec_form(_runtime("model-server").last("CMD") or "")
    assert image_cmd == ["--models", "all"]


def test_model_server_image_paths_agree_with_its_config() -> None:
    runtime = _runtime("model-server")
    env = dict(pair.split("=", 1) for args in runtime.all("ENV") for pair in shlex.split(args))
    assert env["TS_CONFIG_FILE"] == str(props.CONFIG_PATH)
    assert runtime.last("WORKDIR") == str(props.RUN_DIR)
    healthcheck = runtime.last("HEALTHCHECK") or ""
    assert f"{props.RUN_DIR}/key_file.json" in healthcheck
    copies = " ".join(runtime.all("COPY"))
    assert f"config.properties {props.CONFIG_PATH}" in copies
