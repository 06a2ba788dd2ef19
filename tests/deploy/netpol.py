"""Evaluate Kubernetes NetworkPolicies for one connection (the subset ptxplain's manifests use).

Semantics as the API defines them: a pod selected by any policy of a type is isolated for that
direction and admits only what some selecting policy's rules allow; a rule without `from` / `to`
admits every peer, without `ports` every port; a peer with podSelector alone means pods of the
policy's namespace, with namespaceSelector alone every pod of matching namespaces, with both
the matching pods of matching namespaces. A connection needs the source's egress and the
destination's ingress. Named ports are resolved against the destination's container ports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Pod", "allowed"]


@dataclasses.dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]
    namespace_labels: Mapping[str, str]
    ports: Mapping[str, int] = dataclasses.field(default_factory=dict)  # name -> number


def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return True
    wanted = selector.get("matchLabels") or {}
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions are not used by ptxplain's policies")
    return all(labels.get(k) == v for k, v in wanted.items())


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        return False  # cluster pods are not addressed by ipBlock here
    pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")
    if namespaces is None:
        return pod.namespace == policy_ns and _matches(pods, pod.labels)
    return _matches(namespaces, pod.namespace_labels) and _matches(pods, pod.labels)


def _port_matches(rule_ports: Sequence[Mapping[str, Any]] | None, port: int, target: Pod) -> bool:
    if not rule_ports:
        return True
    for item in rule_ports:
        if item.get("protocol", "TCP") != "TCP":
            continue
        wanted = item.get("port")
        if wanted is None or wanted == port or target.ports.get(str(wanted)) == port:
            return True
    return False


def _selected(policy: Mapping[str, Any], pod: Pod, kind: str) -> bool:
    meta, spec = policy["metadata"], policy["spec"]
    types = spec.get("policyTypes") or ["Ingress"]
    return (
        meta.get("namespace") == pod.namespace
        and kind in types
        and _matches(spec.get("podSelector") or {}, pod.labels)
    )


def _direction_allows(
    policies: Sequence[Mapping[str, Any]],
    subject: Pod,
    peer: Pod,
    port: int,
    target: Pod,
    kind: str,
) -> bool:
    selecting = [p for p in policies if _selected(p, subject, kind)]
    if not selecting:
        return True  # not isolated in this direction
    key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    for policy in selecting:
        namespace = policy["metadata"]["namespace"]
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(p, namespace, peer) for p in peers)) and (
                _port_matches(rule.get("ports"), port, target)
            ):
                return True
    return False


def allowed(policies: Sequence[Mapping[str, Any]], source: Pod, target: Pod, port: int) -> bool:
    """Whether ``source`` may open a TCP connection to ``target`` on ``port``."""
    egress = _direction_allows(policies, source, target, port, target, "Egress")
    ingress = _direction_allows(policies, target, source, port, target, "Ingress")
    return egress and ingress
