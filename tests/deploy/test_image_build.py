"""How `make images` builds, without building: the host's pip settings handed in, the build
commands for buildah and for Docker, the engine chosen, and buildah's sizes read."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.containers import images
from services.containers.engine import Engine, EngineMissing, find_engine
from services.containers.host_pip import HostPip, parse_config_list
from services.containers.images import IMAGES, BuildOptions, parse_size

CONFIG_LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.find-links='/opt/wheels'
:env:.default-timeout='180'
global.cert='/somewhere/else.pem'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple https://mirror.example/simple'
global.find-links='/ignored/because/env/wins'
install.trusted-host='mirror.example'
"""


def test_pip_config_list_is_read_with_env_over_files() -> None:
    settings = parse_config_list(CONFIG_LIST)
    assert settings == {
        "cert": "/etc/ssl/certs/ca-certificates.crt",
        "find-links": "/opt/wheels",
        "constraint": "/etc/xdg/pip/constraints.txt",
        "extra-index-url": "file:///opt/pypi/simple https://mirror.example/simple",
        "trusted-host": "mirror.example",
    }  # default-timeout is no source setting: left out


def test_local_paths_are_mounted_and_urls_become_build_args(tmp_path: Path) -> None:
    (tmp_path / "pypi" / "simple").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    pip = HostPip(
        {
            "extra-index-url": f"file://{tmp_path}/pypi/simple https://mirror.example/simple",
            "find-links": f"{tmp_path}/wheels {tmp_path}/missing",
        }
    )
    # a local index's pages link to files beside it: its parent folder is mounted
    assert pip.local_paths() == [tmp_path / "pypi", tmp_path / "wheels"]
    assert pip.build_args() == {"PIP_EXTRA_INDEX_URL": "https://mirror.example/simple"}
    assert "extra-index-url = file://" in pip.conf_text()


def test_buildah_command_keeps_healthcheck_and_mounts_the_pip_settings(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    options = BuildOptions(
        engine=Engine("buildah", "/usr/bin/buildah"),
        pip=HostPip({"find-links": str(tmp_path / "wheels")}),
        torch_index="",
    )
    command = images._command(IMAGES["model-server"], options, tmp_path)
    assert (
        " ".join(command[:8])
        == "/usr/bin/buildah bud --isolation chroot --network host --format docker"
    )
    assert "--layers" in command and command[-1] == str(images.REPO)
    assert f"--volume={tmp_path}/pip.conf:/etc/pip.conf:ro" in command
    assert f"--volume={tmp_path}/wheels:{tmp_path}/wheels:ro" in command
    assert "--build-arg=TORCH_INDEX_URL=" in command and "mounted" in command
    gateway = images._command(IMAGES["gateway"], options, tmp_path)
    assert not any("TORCH_INDEX_URL" in c for c in gateway)


def test_docker_command_gets_urls_only() -> None:
    options = BuildOptions(
        engine=Engine("docker", "/usr/bin/docker"),
        pip=HostPip({"index-url": "https://mirror.example/simple", "find-links": "/opt/wheels"}),
    )
    command = images._command(IMAGES["gateway"], options, Path("/nonexistent"))
    assert command[:2] == ["/usr/bin/docker", "build"]
    assert "--build-arg=PIP_INDEX_URL=https://mirror.example/simple" in command
    assert not any("volume" in c or "/opt/wheels" in c for c in command)


def test_no_engine_and_no_buildah_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EngineMissing, match="buildah is not installed"):
        find_engine("docker", install=False)


@pytest.mark.parametrize(
    ("text", "size"), [("326 MB", 326_000_000), ("6.98 GB", 6_980_000_000), ("512 B", 512)]
)
def test_buildah_sizes_are_read(text: str, size: int) -> None:
    assert parse_size(text) == size
