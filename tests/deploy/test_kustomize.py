"""Every kustomize overlay renders (kubectl's built-in kustomize) and every object validates
against the Kubernetes schemas, offline and strict (kubernetes-validate); then what the schemas
cannot say: hardening, probes, disruption budgets, the autoscaler, references, GPUs."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from services.containers.torchserve_properties import render as render_properties
from tests.deploy.manifests import OVERLAYS, by_kind, containers, one, render, render_dir
from tests.deploy.support import REPO

K8S_VERSION = "1.37.0"
SECRETS = {"gateway-tls", "gateway-client-token"}


def _validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _deployments(overlay: str, app: str) -> list[dict[str, Any]]:
    return [
        d
        for d in by_kind(render(overlay), "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/name"] == app
    ]


def test_there_are_cpu_and_gpu_overlays() -> None:
    assert {"cpu", "gpu"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(overlay: str) -> None:
    objects = render(overlay)
    kinds = {o["kind"] for o in objects}
    assert {
        "Namespace",
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    } <= kinds
    problems = []
    for obj in objects:
        try:
            _validate(obj)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {getattr(e, 'message', e)}")
    assert not problems, "\n".join(problems)
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "ptxplain", obj["metadata"]["name"]


def test_validation_rejects_broken_objects() -> None:
    deployment = one(render("cpu"), "Deployment", "gateway")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = 1
    nameless = copy.deepcopy(deployment)
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]
    for broken in (typo, nameless):
        with pytest.raises(kubernetes_validate.ValidationError):
            _validate(broken)


def test_kustomize_rejects_a_broken_kustomization(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    result = render_dir(str(tmp_path))
    assert result.returncode != 0 and "missing.yaml" in result.stderr


def _port_names(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def _probe_port(probe: dict[str, Any]) -> object:
    handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc") or {}
    return handler.get("port")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_are_hardened_sized_and_probed(overlay: str) -> None:
    for deployment in by_kind(render(overlay), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        name = deployment["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in containers(deployment):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
            ports = _port_names(container)
            for kind in ("readinessProbe", "livenessProbe"):
                port = _probe_port(container[kind])
                assert port in ports or port in ports.values(), f"{name} {kind} port {port}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_model_server_probes_work_without_a_token(overlay: str) -> None:
    objects = render(overlay)
    config = next(
        c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"].startswith("torchserve-")
    )
    assert "disable_token_authorization=true" in config["data"]["config.properties"]
    for deployment in _deployments(overlay, "model-server"):
        container = next(containers(deployment))
        for kind in ("startupProbe", "readinessProbe"):
            assert container[kind]["httpGet"]["path"] == "/ping"
        assert (
            container["startupProbe"]["failureThreshold"]
            * container["startupProbe"]["periodSeconds"]
            >= 300
        ), "models need minutes to load on a cold node"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_torchserve_configmap_is_the_committed_render(overlay: str) -> None:
    committed = (REPO / "k8s" / "base" / "model-server" / "config.properties").read_text()
    assert committed == render_properties(token_auth=False), (
        "k8s/base/model-server/config.properties is stale: run python -m "
        "services.containers.torchserve_properties --no-token-auth --out "
        "k8s/base/model-server/config.properties"
    )
    configs = [c for c in by_kind(render(overlay), "ConfigMap") if "config.properties" in c["data"]]
    assert [c["data"]["config.properties"] for c in configs] == [committed]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_never_block_a_drain(overlay: str) -> None:
    objects = render(overlay)
    deployments = by_kind(objects, "Deployment")
    budgets = by_kind(objects, "PodDisruptionBudget")
    covered = set()
    for budget in budgets:
        spec = budget["spec"]
        assert "minAvailable" not in spec, budget["metadata"]["name"]
        unavailable = spec["maxUnavailable"]
        assert (
            (unavailable >= 1)
            if isinstance(unavailable, int)
            else re.fullmatch(r"[1-9]\d*%", unavailable)
        )
        matched = [
            d["metadata"]["name"]
            for d in deployments
            if _selects(
                spec["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        assert len(matched) == 1, f"{budget['metadata']['name']} selects {matched}"
        covered.update(matched)
    assert covered == {d["metadata"]["name"] for d in deployments}, "every workload has a PDB"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_autoscales_on_cpu(overlay: str) -> None:
    objects = render(overlay)
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "gateway")
    deployment = one(objects, "Deployment", "gateway")
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    assert "cpu" in next(containers(deployment))["resources"]["requests"]
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_one_deployment_and_existing_ports(overlay: str) -> None:
    objects = render(overlay)
    deployments = by_kind(objects, "Deployment")
    for service in by_kind(objects, "Service"):
        spec = service["spec"]
        matched = [
            d
            for d in deployments
            if _selects(spec["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(matched) == 1, service["metadata"]["name"]
        ports = _port_names(next(containers(matched[0])))
        for port in spec["ports"]:
            assert port["targetPort"] in ports or port["targetPort"] in ports.values()


def _referenced(deployment: dict[str, Any], kind: str) -> set[str]:
    pod = deployment["spec"]["template"]["spec"]
    names = set()
    for volume in pod.get("volumes", []):
        if kind == "ConfigMap" and "configMap" in volume:
            names.add(volume["configMap"]["name"])
        if kind == "Secret" and "secret" in volume:
            names.add(volume["secret"]["secretName"])
    for container in pod["containers"]:
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get(f"{kind[0].lower()}{kind[1:]}KeyRef")
            if ref:
                names.add(ref["name"])
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmaps_exist_and_secrets_are_documented(overlay: str) -> None:
    objects = render(overlay)
    configmaps = {c["metadata"]["name"] for c in by_kind(objects, "ConfigMap")}
    secrets: set[str] = set()
    for deployment in by_kind(objects, "Deployment"):
        assert _referenced(deployment, "ConfigMap") <= configmaps
        secrets |= _referenced(deployment, "Secret")
    assert secrets == SECRETS
    docs = (REPO / "docs" / "kubernetes.md").read_text()
    for secret in secrets:
        assert "kubectl -n ptxplain create secret" in docs and secret in docs, secret


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpus_only_in_the_gpu_overlay_one_per_group(overlay: str) -> None:
    for deployment in by_kind(render(overlay), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        limits = next(containers(deployment))["resources"]["limits"]
        is_model_server = (
            deployment["metadata"]["labels"]["app.kubernetes.io/name"] == "model-server"
        )
        if overlay == "gpu" and is_model_server:
            assert limits["nvidia.com/gpu"] == 1
            assert pod["nodeSelector"]
            assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
            assert next(containers(deployment))["image"].endswith("cuda-baked")
        else:
            assert "nvidia.com/gpu" not in limits and "nodeSelector" not in pod
            if is_model_server:
                assert next(containers(deployment))["image"].endswith("cpu-baked")
