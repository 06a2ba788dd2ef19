"""The gateway's model -> endpoint map and the model-server groups agree, in every overlay and
under docker-compose.yml: each backend names a Service (and its ports) that selects exactly the
group whose --models list holds the backend's models; each config loads with the gateway's own
loader (services/gateway/config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.gateway.config import GatewayConfig, config_from_mapping
from tests.deploy.manifests import OVERLAYS, by_kind, containers, env_value, one, render
from tests.deploy.support import REPO


def _load(raw: dict[str, Any], tmp_path: Path) -> GatewayConfig:
    """The gateway's loader, with the TLS files (Secret mounts in the cluster) stood in for."""
    raw = dict(raw)
    if raw.get("tls"):
        for name in ("cert", "key"):
            (tmp_path / name).write_text("stand-in\n")
        raw["tls"] = {"cert": str(tmp_path / "cert"), "key": str(tmp_path / "key")}
    return config_from_mapping(
        raw, base=tmp_path, source="gateway.yaml", env={"PTXPLAIN_GATEWAY_TOKEN": "t"}
    )


def _gateway_yaml(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (config,) = [c for c in by_kind(objects, "ConfigMap") if "gateway.yaml" in c["data"]]
    return dict(yaml.safe_load(config["data"]["gateway.yaml"]))


def _group_models(deployment: dict[str, Any]) -> list[str]:
    value = env_value(next(containers(deployment)), "PTXPLAIN_MODELS") or ""
    return [name.removesuffix(".mar") for name in value.split(",")]


def _service_backend(objects: list[dict[str, Any]], address: str) -> dict[str, Any]:
    """The Deployment behind ``host:port`` (a Service in the namespace, one of its ports)."""
    host, _, port = address.rpartition(":")
    service = one(objects, "Service", host)
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}, address
    selector = service["spec"]["selector"]
    (deployment,) = [
        d
        for d in by_kind(objects, "Deployment")
        if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ]
    return deployment


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_backend_is_one_model_group(overlay: str, tmp_path: Path) -> None:
    objects = render(overlay)
    config = _load(_gateway_yaml(objects), tmp_path)
    assert config.host == "0.0.0.0" and config.tls is not None and config.client_token
    served: list[str] = []
    for backend in config.backends:
        assert not backend.discovers, f"{backend.name}: list the group's models explicitly"
        deployment = _service_backend(objects, backend.grpc)
        management = urlsplit(backend.management)
        assert _service_backend(objects, management.netloc) is deployment
        assert list(backend.models) == _group_models(deployment), backend.name
        served += backend.models
    groups = [
        m
        for d in by_kind(objects, "Deployment")
        if "PTXPLAIN_MODELS" in str(d)
        for m in _group_models(d)
    ]
    assert sorted(served) == sorted(groups) and len(set(groups)) == len(groups)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_pod_provides_what_its_config_reads(overlay: str, tmp_path: Path) -> None:
    objects = render(overlay)
    raw = _gateway_yaml(objects)
    container = next(containers(one(objects, "Deployment", "gateway")))
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for path in raw["tls"].values():
        assert str(Path(path).parent) in mounts, path
    env = {item["name"]: item for item in container["env"]}
    assert (
        env["PTXPLAIN_GATEWAY_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "gateway-client-token"
    )
    config_path = Path(env["PTXPLAIN_GATEWAY_CONFIG"]["value"])
    assert str(config_path.parent) in mounts
    ports = {p["containerPort"] for p in container["ports"]}
    assert {raw["grpc_port"], raw["http_port"]} == ports
    for kind in ("readinessProbe", "livenessProbe"):
        assert container[kind]["httpGet"]["scheme"] == "HTTPS", "the gateway serves TLS"


def test_compose_gateway_config_loads_and_names_the_model_server(tmp_path: Path) -> None:
    raw = yaml.safe_load(
        (REPO / "services" / "containers" / "compose" / "gateway.yaml").read_text()
    )
    token = tmp_path / "gateway-token"
    token.write_text("t\n")
    raw["client_token_file"] = str(token)
    config = _load(raw, tmp_path)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    aliases = set()
    for service in compose["services"].values():
        networks = service.get("networks")
        if isinstance(networks, dict):
            aliases.update(networks.get("backend", {}).get("aliases", []))
    for backend in config.backends:
        assert backend.grpc.rpartition(":")[0] in aliases
        assert urlsplit(backend.management).hostname in aliases
