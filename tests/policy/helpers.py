"""Small builders for hand-written policy cases (states in protobuf's JSON mapping)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.compile import compile_endpoint, compile_host_endpoint, first_match
from vppagent.policy.evaluate import Verdict, host_endpoint_verdict, verdict
from vppagent.policy.packet import Packet
from vppagent.state.model import DataplaneState, WorkloadKey

EP = WorkloadKey("k8s", "default/pod", "eth0")
EP_TEXT = "k8s/default/pod/eth0"


def pid(name: str, kind: str = "") -> dict[str, str]:
    return {"name": name, "namespace": "default", "kind": kind}


def tier(name: str, ingress: list[str] | None = None, egress: list[str] | None = None,
         default: str = "Deny", staged: tuple[str, ...] = ()) -> dict[str, Any]:
    def ids(names: list[str] | None) -> list[dict[str, str]]:
        return [pid(n, "StagedNetworkPolicy" if n in staged else "") for n in names or []]
    return {"name": name, "ingress_policies": ids(ingress), "egress_policies": ids(egress),
            "default_action": default}


def messages(*, policies: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] | None = None,
             profiles: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] | None = None,
             ipsets: dict[str, tuple[str, list[str]]] | None = None,
             tiers: list[dict[str, Any]] | None = None, profile_ids: list[str] | None = None,
             config: dict[str, str] | None = None, state: str = "active",
             staged: tuple[str, ...] = (), hep: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if config:
        out.append({"config_update": {"config": config}})
    for set_id, (kind, members) in (ipsets or {}).items():
        out.append({"ipset_update": {"id": set_id, "type": kind, "members": members}})
    for name, (inbound, outbound) in (policies or {}).items():
        kind = "StagedNetworkPolicy" if name in staged else ""
        out.append({"active_policy_update": {"id": pid(name, kind), "policy": {
            "namespace": "default", "inbound_rules": inbound, "outbound_rules": outbound}}})
    for name, (inbound, outbound) in (profiles or {}).items():
        out.append({"active_profile_update": {"id": {"name": name}, "profile": {
            "inbound_rules": inbound, "outbound_rules": outbound}}})
    if hep is not None:
        out.append({"host_endpoint_update": {"id": {"endpoint_id": "eth0"}, "endpoint": hep}})
    out.append({"workload_endpoint_update": {
        "id": {"orchestrator_id": EP.orchestrator_id, "workload_id": EP.workload_id, "endpoint_id": EP.endpoint_id},
        "endpoint": {"state": state, "name": "cali1", "ipv4_nets": ["10.65.0.2/32"], "ipv6_nets": ["fd65::2/128"],
                     "profile_ids": profile_ids or [], "tiers": tiers or []}}})
    return out


def build_state(**kwargs: Any) -> DataplaneState:
    state = DataplaneState()
    for m in messages(**kwargs):
        state.apply(json_format.ParseDict(m, felix.ToDataplane()))
    return state


def check(state: DataplaneState, direction: str, packet: str, expected: str) -> Verdict:
    """The evaluator's verdict must be `expected`, and the compiled list must agree."""
    pkt = Packet.parse(packet)
    v = verdict(state, EP, direction, pkt)
    assert v.action == expected, f"{packet} {direction}: evaluator says {v.describe()}"
    compiled = compile_endpoint(state, EP, direction)
    fm = first_match(compiled, pkt)
    assert fm.action == expected, f"{packet} {direction}: compiled list says {fm}\n{compiled.render()}"
    return v


def check_hep(state: DataplaneState, direction: str, packet: str, expected: str) -> Verdict:
    pkt = Packet.parse(packet)
    v = host_endpoint_verdict(state, "eth0", direction, pkt)
    assert v.action == expected, f"{packet} {direction}: evaluator says {v.describe()}"
    if expected != "none":
        compiled = compile_host_endpoint(state, "eth0", direction)
        fm = first_match(compiled, pkt)
        assert fm.action == expected, f"{packet} {direction}: compiled list says {fm}\n{compiled.render()}"
    return v


ALLOW_ALL: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([{"action": "allow"}], [{"action": "allow"}])


def tcp(port: int, **extra: Any) -> dict[str, Any]:
    return {"protocol": {"name": "tcp"}, "dst_ports": [{"first": port, "last": port}], **extra}
