"""Random valid ToDataplane messages of any supported Felix release, and their v3.33 meaning.

`random_message(release, rng, i)` fills every field of the i-th payload type (round robin, so a
run covers every message type), repeated fields 0-3 times, nested messages to depth 5, one member
per oneof. Values are "valid" as Felix would send them where the dataplane reads meaning from text:
policy names of v3.31 and earlier come from `V1_POLICY_NAMES`.

`expected_newest(release, msg)` is this test's own statement of what the message means in v3.33,
written per difference over the JSON form (names, not numbers), independently of
felix_shim.releases.upgrade, which works on descriptors and bytes.
"""

from __future__ import annotations

import random
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from felix_shim.releases.schema import schema
from vppagent.gen.felix import felixbackend_pb2 as felix

# v3.31-and-earlier policy names and the (name, namespace, kind) that v3.32 gives the same policy.
V1_POLICY_NAMES: dict[str, tuple[str, str, str]] = {
    "default.allow-dns": ("default.allow-dns", "", "GlobalNetworkPolicy"),
    "security.deny-all": ("security.deny-all", "", "GlobalNetworkPolicy"),
    "staged:default.audit": ("default.audit", "", "StagedGlobalNetworkPolicy"),
    "prod/default.web": ("default.web", "prod", "NetworkPolicy"),
    "prod/staged:platform.db": ("platform.db", "prod", "StagedNetworkPolicy"),
    "dev/knp.default.allow-frontend": ("knp.default.allow-frontend", "dev", "KubernetesNetworkPolicy"),
    "dev/staged:knp.default.lockdown": ("knp.default.lockdown", "dev", "StagedKubernetesNetworkPolicy"),
    "kanp.adminnetworkpolicy.pin": ("kanp.adminnetworkpolicy.pin", "", "KubernetesClusterNetworkPolicy"),
    "kbanp.baselineadminnetworkpolicy.default": (
        "kbanp.baselineadminnetworkpolicy.default", "", "KubernetesClusterNetworkPolicy"),
}

STRINGS = ["", "a", "10.0.0.1/32", "fd00::1", "ns/pod", "x" * 40, "é∂", "Deny", "Pass"]
SCALARS: dict[int, Any] = {
    FieldDescriptor.TYPE_STRING: lambda r: r.choice(STRINGS),
    FieldDescriptor.TYPE_BOOL: lambda r: r.random() < 0.5,
    FieldDescriptor.TYPE_INT32: lambda r: r.choice([0, 1, -1, 65535, 2**31 - 1, -(2**31)]),
    FieldDescriptor.TYPE_INT64: lambda r: r.choice([0, 1, -1, 2**63 - 1, -(2**63)]),
    FieldDescriptor.TYPE_UINT32: lambda r: r.choice([0, 1, 4789, 2**32 - 1]),
    FieldDescriptor.TYPE_UINT64: lambda r: r.choice([0, 1, 2**64 - 1]),
    FieldDescriptor.TYPE_DOUBLE: lambda r: r.choice([0.0, 1.5, -2.25, 1e300]),
    FieldDescriptor.TYPE_FLOAT: lambda r: r.choice([0.0, 1.5, -2.25]),
    FieldDescriptor.TYPE_BYTES: lambda r: r.choice([b"", b"\x00\xff", b"abc"]),
}
MAX_DEPTH = 5


def payload_fields(release: str) -> list[FieldDescriptor]:
    desc = schema(release).to_dataplane.DESCRIPTOR
    return sorted((f for f in desc.fields if f.containing_oneof is not None), key=lambda f: f.number)


def _v1_names(desc: Descriptor, f: FieldDescriptor, release: str) -> bool:
    """Fields that hold a v3.31-and-earlier policy name."""
    if f.type != FieldDescriptor.TYPE_STRING:
        return False
    return (desc.name, f.name) in {("TierInfo", "ingress_policies"), ("TierInfo", "egress_policies"),
                                   ("PolicyID", "name")} and "tier" in schema(release).descriptor(
        "PolicyID").fields_by_name


def fill(msg: Message, rng: random.Random, release: str, depth: int = 0) -> None:
    desc: Descriptor = msg.DESCRIPTOR
    chosen = {o.name: rng.choice(o.fields) for o in desc.oneofs}
    for f in desc.fields:
        if f.containing_oneof is not None and chosen[f.containing_oneof.name] is not f:
            continue
        if f.type == FieldDescriptor.TYPE_MESSAGE and depth >= MAX_DEPTH:
            continue
        if rng.random() < 0.15 and not _v1_names(desc, f, release):
            continue  # a v1 policy name is always there: Felix never sends a policy without one
        count = rng.randint(0, 3) if f.is_repeated else 1
        for _ in range(count):
            _fill_one(msg, f, rng, release, depth)


def _fill_one(msg: Message, f: FieldDescriptor, rng: random.Random, release: str, depth: int) -> None:
    container = getattr(msg, f.name)
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        key_f, value_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
        key = SCALARS[key_f.type](rng)
        if value_f.type == FieldDescriptor.TYPE_MESSAGE:
            fill(container[key], rng, release, depth + 1)
        else:
            container[key] = SCALARS[value_f.type](rng)
        return
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        sub = container.add() if f.is_repeated else container
        sub.SetInParent()
        fill(sub, rng, release, depth + 1)
        return
    if f.type == FieldDescriptor.TYPE_ENUM:
        value = rng.choice(f.enum_type.values).number
    elif _v1_names(msg.DESCRIPTOR, f, release):
        value = rng.choice(sorted(V1_POLICY_NAMES))
    else:
        value = SCALARS[f.type](rng)
    if f.is_repeated:
        container.append(value)
    else:
        setattr(msg, f.name, value)


def random_message(release: str, rng: random.Random, index: int) -> Message:
    """A ToDataplane of `release` whose payload is the index-th payload type (round robin)."""
    payloads = payload_fields(release)
    f = payloads[index % len(payloads)]
    msg = schema(release).to_dataplane()
    msg.sequence_number = rng.choice([0, 1, 2**40])
    sub = getattr(msg, f.name)
    sub.SetInParent()
    fill(sub, rng, release, 1)
    return msg


# -- the v3.33 meaning, per difference (docs/felix-compat.md) -------------------------------------
def _older_or_same(release: str, than: str) -> bool:
    return tuple(map(int, release.split("."))) <= tuple(map(int, than.split(".")))


def _identity(v1_name: str) -> dict[str, str]:
    name, namespace, kind = V1_POLICY_NAMES[v1_name]
    return {k: v for k, v in (("name", name), ("namespace", namespace), ("kind", kind)) if v}


def _tiers(endpoint: dict[str, Any]) -> None:
    for key in ("tiers", "untracked_tiers", "pre_dnat_tiers", "forward_tiers"):
        for tier in endpoint.get(key, []):
            for direction in ("ingress_policies", "egress_policies"):
                if direction in tier:
                    tier[direction] = [_identity(n) for n in tier[direction]]


def expected_newest(release: str, msg: Message) -> felix.ToDataplane:
    d = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    payload = msg.WhichOneof("payload")  # type: ignore[arg-type]
    body = d.get(payload, {})
    if _older_or_same(release, "3.31"):
        if payload in ("active_policy_update", "active_policy_remove") and "id" in body:
            pid = body["id"]
            tier = pid.pop("tier", "")
            body["id"] = _identity(pid["name"]) if "name" in pid else {}
            if payload == "active_policy_update" and "policy" in body and tier:
                body["policy"]["tier"] = tier
        if payload in ("workload_endpoint_update", "host_endpoint_update") and "endpoint" in body:
            _tiers(body["endpoint"])
    if _older_or_same(release, "3.29") and payload == "route_update" and "type" in body:
        body["types"] = body.pop("type")
    if release == "3.30" and payload == "workload_endpoint_update":
        body.get("endpoint", {}).pop("type", None)
    if _older_or_same(release, "3.32"):
        host = body.get("hostname", "")
        if payload in ("host_metadata_update", "host_metadata_v4v6_update", "host_metadata_v6_update"):
            d.pop(payload)
            d["host_metadata_update"] = {"hostname": host, **{k: v for k, v in body.items() if k in (
                "ipv4_addr", "ipv6_addr", "asnumber", "labels")}}
        elif payload in ("host_metadata_remove", "host_metadata_v4v6_remove", "host_metadata_v6_remove"):
            d.pop(payload)
            d["host_metadata_remove"] = {"hostname": host, **{k: v for k, v in body.items() if k == "ipv4_addr"}}
    return json_format.ParseDict(d, felix.ToDataplane())
