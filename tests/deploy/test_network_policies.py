"""Who reaches whom under the rendered NetworkPolicies (evaluated by tests/deploy/netpol.py):
only the gateway reaches the model servers (gRPC inference, and the read-only management API
its catalog polls), Prometheus reaches their metrics, nothing reaches their REST inference or
gRPC management ports, clients reach the gateway, and model servers reach nowhere."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.manifests import OVERLAYS, by_kind, containers, render
from tests.deploy.netpol import Pod, allowed

NAMESPACE = {"kubernetes.io/metadata.name": "ptxplain"}
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}


def _pod(objects: list[dict[str, Any]], app: str) -> Pod:
    deployment = next(
        d
        for d in by_kind(objects, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/name"] == app
    )
    ports = {p["name"]: p["containerPort"] for p in next(containers(deployment)).get("ports", [])}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return Pod("ptxplain", labels, NAMESPACE, ports)


def _pods(objects: list[dict[str, Any]]) -> dict[str, Pod]:
    return {
        "gateway": _pod(objects, "gateway"),
        "model-server": _pod(objects, "model-server"),
        "prometheus": Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, MONITORING),
        "other-pod": Pod("ptxplain", {"app.kubernetes.io/name": "debug-shell"}, NAMESPACE),
        "other-namespace": Pod(
            "default", {"app": "client"}, {"kubernetes.io/metadata.name": "default"}
        ),
        "dns": Pod(
            "kube-system", {"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"}
        ),
    }


CASES = [
    # source, target, port, allowed
    ("gateway", "model-server", 7070, True),
    ("gateway", "model-server", 8081, True),
    ("gateway", "model-server", 8080, False),
    ("gateway", "model-server", 7071, False),
    ("gateway", "model-server", 8082, False),
    ("prometheus", "model-server", 8082, True),
    ("prometheus", "model-server", 7070, False),
    ("prometheus", "model-server", 8081, False),
    ("other-pod", "model-server", 7070, False),
    ("other-pod", "model-server", 8081, False),
    ("other-namespace", "model-server", 7070, False),
    ("model-server", "model-server", 7070, False),
    ("other-namespace", "gateway", 50051, True),
    ("other-namespace", "gateway", 8000, True),
    # default-deny covers egress too: a stray pod in the namespace reaches nothing
    ("other-pod", "gateway", 50051, False),
    ("other-namespace", "gateway", 9090, False),
    ("model-server", "other-namespace", 443, False),
    ("model-server", "dns", 53, False),
    ("gateway", "dns", 53, True),
    ("gateway", "other-namespace", 443, False),
]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(("source", "target", "port", "expected"), CASES)
def test_reachability(overlay: str, source: str, target: str, port: int, expected: bool) -> None:
    objects = render(overlay)
    pods = _pods(objects)
    policies = by_kind(objects, "NetworkPolicy")
    assert allowed(policies, pods[source], pods[target], port) is expected


def test_without_policies_everything_is_reachable() -> None:
    """The evaluator's control: the denials above come from the policies."""
    pods = _pods(render("cpu"))
    assert allowed([], pods["other-pod"], pods["model-server"], 7071)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_model_group_is_covered(overlay: str) -> None:
    objects = render(overlay)
    policies = by_kind(objects, "NetworkPolicy")
    gateway = _pod(objects, "gateway")
    for deployment in by_kind(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels["app.kubernetes.io/name"] != "model-server":
            continue
        group = Pod("ptxplain", labels, NAMESPACE)
        assert allowed(policies, gateway, group, 7070)
        assert not allowed(policies, gateway, group, 7071)
