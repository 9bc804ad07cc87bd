"""One hand-written Felix stream per release: ConfigUpdate, snapshot, InSync, deltas.

`stream(form, content)` writes what a Felix of release `content` says, encoded the way a Felix of
release `form` would send it: `stream(r, r)` is release r's own stream, and `stream("3.33", r)` is
the same content in the v3.33 form, the reference that felix-shim's output must equal. Content that
only newer releases can express (IP pool allowed uses, tier default actions) follows `content`.

Three pods (the kernel tests' lab: cali1..3, 10.65.0.2..4). A namespaced policy in tier "default"
allows TCP 8080 from IP set s:client (pod2) into pod1; the profile allows everything out and
nothing in. The deltas add pod3 to s:client, replace the policy with one for port 9090, and remove
the host metadata.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from felix_shim.releases.schema import schema

POD1 = "10.65.0.2"
CLIENTS = ("10.65.0.3", "10.65.0.4")
POLICY_V1_NAME = "prod/default.allow-client"  # how v3.31 and earlier name it
POLICY_ID = {"name": "default.allow-client", "namespace": "prod", "kind": "NetworkPolicy"}  # v3.32 on


def at_least(release: str, than: str) -> bool:
    return tuple(map(int, release.split("."))) >= tuple(map(int, than.split(".")))


def _policy_ref(form: str) -> Any:
    return POLICY_V1_NAME if not at_least(form, "3.32") else POLICY_ID


def _policy(form: str, port: int) -> dict[str, Any]:
    pid = {"tier": "default", "name": POLICY_V1_NAME} if not at_least(form, "3.32") else POLICY_ID
    policy: dict[str, Any] = {
        "namespace": "prod",
        "inbound_rules": [{"action": "allow", "protocol": {"name": "tcp"}, "src_ip_set_ids": ["s:client"],
                           "dst_ports": [{"first": port, "last": port}], "rule_id": f"allow-{port}"}],
    }
    if at_least(form, "3.32"):
        policy["tier"] = "default"
    return {"active_policy_update": {"id": pid, "policy": policy}}


def _workload(form: str, content: str, pod: int = 1) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"state": "active", "name": f"cali{pod}", "profile_ids": ["kns.prod"],
                                "ipv4_nets": [f"10.65.0.{pod + 1}/32"]}
    if pod == 1:
        tier: dict[str, Any] = {"name": "default", "ingress_policies": [_policy_ref(form)]}
        if at_least(content, "3.29"):
            tier["default_action"] = "Deny"
        endpoint["tiers"] = [tier]
    return {"workload_endpoint_update": {
        "id": {"orchestrator_id": "k8s", "workload_id": f"prod/pod{pod}", "endpoint_id": "eth0"},
        "endpoint": endpoint}}


def _route(form: str, dst: str, kind: str, **extra: Any) -> dict[str, Any]:
    route = {"dst": dst, **extra}
    route["type" if not at_least(form, "3.30") else "types"] = kind
    return {"route_update": route}


def _host_metadata(form: str) -> list[dict[str, Any]]:
    labels = {"kubernetes.io/hostname": "node1", "zone": "a"}
    if at_least(form, "3.33"):
        return [{"host_metadata_update": {"hostname": "node1", "ipv4_addr": "192.168.0.1/24",
                                          "asnumber": "65001", "labels": labels}}]
    return [{"host_metadata_update": {"hostname": "node1", "ipv4_addr": "192.168.0.1"}},
            {"host_metadata_v4v6_update": {"hostname": "node1", "ipv4_addr": "192.168.0.1/24",
                                           "asnumber": "65001", "labels": labels}}]


def _host_metadata_remove(form: str) -> list[dict[str, Any]]:
    if at_least(form, "3.33"):
        return [{"host_metadata_remove": {"hostname": "node1"}}]
    return [{"host_metadata_remove": {"hostname": "node1"}}, {"host_metadata_v4v6_remove": {"hostname": "node1"}}]


def snapshot(form: str, content: str, calico_version: bool = True) -> list[dict[str, Any]]:
    config = {"FelixHostname": "node1", "ReportingIntervalSecs": "0"}
    if calico_version:
        config["CalicoVersion"] = f"v{content}.2"
    pool: dict[str, Any] = {"cidr": "10.65.0.0/16", "masquerade": True}
    if at_least(content, "3.31"):
        pool["allowed_uses"] = ["Workload", "Tunnel"]
    return [
        {"config_update": {"config": config}},
        {"ipset_update": {"id": "s:client", "members": [CLIENTS[0]], "type": "IP"}},
        _policy(form, 8080),
        {"active_profile_update": {"id": {"name": "kns.prod"},
                                   "profile": {"outbound_rules": [{"action": "allow"}]}}},
        *(_workload(form, content, pod) for pod in (1, 2, 3)),
        _route(form, f"{POD1}/32", "LOCAL_WORKLOAD", dst_node_name="node1", local_workload=True),
        _route(form, "10.65.1.0/26", "REMOTE_WORKLOAD", dst_node_name="node2", dst_node_ip="198.18.0.2"),
        *_host_metadata(form),
        {"ipam_pool_update": {"id": "10.65.0.0/16", "pool": pool}},
        {"encapsulation": {"ipip_enabled": False, "vxlan_enabled": True}},
    ]


def deltas(form: str, content: str) -> list[dict[str, Any]]:
    return [
        {"ipset_delta_update": {"id": "s:client", "added_members": [CLIENTS[1]]}},
        _policy(form, 9090),
        {"route_remove": {"dst": "10.65.1.0/26"}},
        *_host_metadata_remove(form),
    ]


def stream(form: str, content: str, calico_version: bool = True) -> list[Message]:
    """The whole stream as `form`'s ToDataplane messages, sequence numbers 1, 2, ..."""
    cls = schema(form).to_dataplane
    items = [*snapshot(form, content, calico_version), {"in_sync": {}}, *deltas(form, content)]
    out = []
    for number, item in enumerate(items, 1):
        msg = json_format.ParseDict(item, cls())
        msg.sequence_number = number
        out.append(msg)
    return out
