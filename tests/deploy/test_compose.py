"""docker-compose.yml against the Compose specification (check-jsonschema's vendored schema,
offline), then what the schema cannot say: profiles, GPU reservation, networks, health, paths."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.containers import torchserve_properties as props
from tests.deploy.support import REPO, venv_tool

COMPOSE = REPO / "docker-compose.yml"
MODEL_SERVERS = ("model-server-cpu", "model-server-gpu")


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(venv_tool("check-jsonschema")),
        "--builtin-schema",
        "vendor.compose-spec",
        str(path),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_compose_file_follows_the_compose_specification() -> None:
    result = _check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = COMPOSE.read_text().replace(
        "    restart: unless-stopped", "    restart: [sometimes]", 1
    )
    broken = broken.replace(
        "  stop_grace_period: 60s", "  stop_grace_period: 60s\n  gpus_please: 1"
    )
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = _check(tmp_path / "docker-compose.yml")
    assert result.returncode != 0
    assert "gpus_please" in result.stdout + result.stderr


def test_profiles_pick_the_model_server() -> None:
    services = _compose()["services"]
    assert services["model-server-cpu"]["profiles"] == ["cpu"]
    assert services["model-server-gpu"]["profiles"] == ["gpu"]
    assert "profiles" not in services["gateway"], "the gateway runs with either profile"
    for name in MODEL_SERVERS:
        assert services[name]["networks"]["backend"]["aliases"] == ["model-server"]
        depends = services["gateway"]["depends_on"][name]
        assert depends == {"condition": "service_healthy", "required": False}


def test_the_gpu_profile_reserves_a_gpu() -> None:
    services = _compose()["services"]
    (device,) = services["model-server-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device.get("count", device.get("device_ids")), "one GPU, or named ones"
    assert services["model-server-gpu"]["build"]["args"]["TORCH_INDEX_URL"] == ""
    assert "deploy" not in services["model-server-cpu"]


def test_model_servers_sit_on_an_internal_network_only() -> None:
    compose = _compose()
    assert compose["networks"]["backend"]["internal"] is True
    for name in MODEL_SERVERS:
        service = compose["services"][name]
        assert "ports" not in service, f"{name} publishes nothing"
        assert set(service["networks"]) == {"backend"}
    for port in compose["services"]["gateway"]["ports"]:
        assert port.startswith("${PTXPLAIN_BIND:-127.0.0.1}:"), "published on loopback by default"


@pytest.mark.parametrize("name", [*MODEL_SERVERS, "gateway"])
def test_services_are_read_only_non_privileged_and_built_here(name: str) -> None:
    service = _compose()["services"][name]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert "/tmp" in service["tmpfs"]
    assert (REPO / service["build"]["dockerfile"]).is_file()


def test_model_server_mounts_match_the_image() -> None:
    compose = _compose()
    service = compose["services"]["model-server-cpu"]
    (store,) = service["volumes"]
    assert store["target"] == str(props.MODEL_STORE) and store["read_only"] is True
    (config,) = service["configs"]
    assert config["target"] == str(props.CONFIG_PATH)
    source = REPO / compose["configs"][config["source"]]["file"]
    assert "disable_token_authorization=true" in source.read_text()
    assert {str(props.RUN_DIR), "/home/model-server/logs"} <= set(service["tmpfs"])
    assert service["command"] == ["--models", "${PTXPLAIN_MODELS:-all}"]


def test_config_files_exist_and_the_token_comes_from_make() -> None:
    compose = _compose()
    for config in compose["configs"].values():
        assert (REPO / config["file"]).is_file(), config["file"]
    token = compose["secrets"]["gateway_token"]["file"]
    assert token.removeprefix("./") in (REPO / "Makefile").read_text()
    gateway = yaml.safe_load((REPO / "services/containers/compose/gateway.yaml").read_text())
    assert gateway["client_token_file"] == "/run/secrets/gateway-token"
    assert compose["services"]["gateway"]["secrets"] == [
        {"source": "gateway_token", "target": "gateway-token"}
    ]
