"""Reading an older release's message as the v3.33 message that means the same.

`Upgrader(release).convert(src, dst)` copies a message decoded with the release's classes into
the v3.33 class: every part whose encoding is the same in both is moved as bytes; the parts that
differ (`ReleaseSchema.changed`) go through the converters below, one per reviewed difference
(docs/felix-compat.md). A converter raises `NotThisRelease` when the content cannot have come from
that release (the decoder then rules the release out for the stream).

Host metadata (v3.32 and earlier) is not a per-message conversion: those releases spread a node's
metadata over three messages, so `HostMetadataMerge` keeps per host what each said and produces the
one v3.33 HostMetadataUpdate (or Remove) they amount to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from felix_shim.releases.schema import ReleaseSchema, schema
from vppagent.gen.felix import felixbackend_pb2 as felix


class NotThisRelease(Exception):
    """The bytes decode under the release's schema, but their content cannot be that release's."""


# -- v3.31 and earlier: policies named by one string --------------------------------------------
# Up to v3.31 Felix named a policy by its "v1" name: "[<namespace>/][staged:]<rest>", with
# <rest> "knp.default.<name>" for Kubernetes NetworkPolicies, "kanp.adminnetworkpolicy.<name>" /
# "kbanp.baselineadminnetworkpolicy.<name>" for (Baseline)AdminNetworkPolicies, else
# "<tier>.<name>". v3.32 names it by (name, namespace, kind) instead.
STAGED_PREFIX = "staged:"
KUBE_PREFIXES = {
    "knp.default.": ("KubernetesNetworkPolicy", "StagedKubernetesNetworkPolicy"),
    "kanp.adminnetworkpolicy.": ("KubernetesClusterNetworkPolicy", "KubernetesClusterNetworkPolicy"),
    "kbanp.baselineadminnetworkpolicy.": ("KubernetesClusterNetworkPolicy", "KubernetesClusterNetworkPolicy"),
}


def policy_identity(v1_name: str) -> tuple[str, str, str]:
    """(name, namespace, kind) for a v3.31-and-earlier policy name.

    The mapping is one-to-one (the namespace and the staged prefix become their own parts), so two
    different v1 names never become the same key; the kind says whether the policy is staged,
    which is all the dataplane needs it for.
    """
    if not v1_name or not v1_name.isprintable():
        raise NotThisRelease(f"policy name {v1_name!r} is not a policy name")
    namespace, sep, rest = v1_name.partition("/")
    if not sep:
        namespace, rest = "", v1_name
    staged = rest.startswith(STAGED_PREFIX)
    if staged:
        rest = rest[len(STAGED_PREFIX):]
    for prefix, (kind, staged_kind) in KUBE_PREFIXES.items():
        if rest.startswith(prefix):
            return rest, namespace, staged_kind if staged else kind
    if namespace:
        return rest, namespace, "StagedNetworkPolicy" if staged else "NetworkPolicy"
    return rest, "", "StagedGlobalNetworkPolicy" if staged else "GlobalNetworkPolicy"


def _policy_id(src: Any, dst: Any, up: Upgrader) -> None:
    dst.name, dst.namespace, dst.kind = policy_identity(src.name)


def _active_policy_update(src: Any, dst: Any, up: Upgrader) -> None:
    up.copy_fields(src, dst)
    if src.HasField("policy") and src.id.tier:
        dst.policy.tier = src.id.tier  # v3.32 moved the tier from the id into the policy


def _tier_policies(src: Any, values: Any, dst: Any, f: FieldDescriptor, up: Upgrader) -> None:
    target = getattr(dst, f.name)
    for v1_name in values:
        name, namespace, kind = policy_identity(v1_name)
        target.add(name=name, namespace=namespace, kind=kind)


# -- v3.29 and earlier: one route type, numbered 0..6 --------------------------------------------
def _route_type(src: Any, value: Any, dst: Any, f: FieldDescriptor, up: Upgrader) -> None:
    assert f.enum_type is not None
    old = f.enum_type.values_by_number.get(value)
    new = felix.RouteType.DESCRIPTOR.values_by_name.get(old.name) if old is not None else None
    if new is None:
        up.unknown.append(f"RouteUpdate.type={value}")
        return  # an unknown type routes nothing: the route stays CIDR_INFO (information only)
    dst.types = new.number  # v3.30's bit set with that one bit


def _dropped(src: Any, value: Any, dst: Any, f: FieldDescriptor, up: Upgrader) -> None:
    """A field with no v3.33 counterpart that the dataplane has no use for."""


MessageHook = Callable[[Any, Any, "Upgrader"], None]
FieldHook = Callable[[Any, Any, Any, FieldDescriptor, "Upgrader"], None]

# Whole-message converters, by message name: used where the release's message is changed.
MESSAGE_HOOKS: dict[str, MessageHook] = {
    "felix.PolicyID": _policy_id,  # <= 3.31: (tier, v1 name) -> (name, namespace, kind)
    "felix.ActivePolicyUpdate": _active_policy_update,  # <= 3.31: and Policy.tier
}
# Field converters, by (message name, field number) of the release's schema; used where that
# field differs from v3.33's field of the same number.
FIELD_HOOKS: dict[tuple[str, int], FieldHook] = {
    ("felix.TierInfo", 2): _tier_policies,  # <= 3.31: repeated string ingress_policies
    ("felix.TierInfo", 3): _tier_policies,  # <= 3.31: repeated string egress_policies
    ("felix.RouteUpdate", 1): _route_type,  # <= 3.29: RouteType type (old numbering)
    ("felix.WorkloadEndpoint", 14): _dropped,  # 3.30: WorkloadType type (REGULAR/VM), gone in 3.31
}


@dataclass
class Upgrader:
    """Converts one release's messages into v3.33's. `unknown` collects values it had to skip."""

    release: ReleaseSchema
    unknown: list[str] = field(default_factory=list)

    def convert(self, src: Message, dst: Message) -> None:
        hook = MESSAGE_HOOKS.get(src.DESCRIPTOR.full_name)
        if hook is not None:
            hook(src, dst, self)
        else:
            self.copy_fields(src, dst)

    def copy_fields(self, src: Message, dst: Message) -> None:
        """Same-shape fields move as bytes; changed ones are converted one by one."""
        desc = src.DESCRIPTOR
        ours = dst.DESCRIPTOR.fields_by_number
        special: list[tuple[FieldDescriptor, Any]] = []
        for f, value in src.ListFields():
            if self._differs(f, ours.get(f.number)):
                special.append((f, value))
        if not special:
            dst.MergeFromString(src.SerializeToString())
            return
        rest = type(src)()
        rest.CopyFrom(src)
        for f, _ in special:
            rest.ClearField(f.name)
        dst.MergeFromString(rest.SerializeToString())
        for f, value in special:
            hook = FIELD_HOOKS.get((desc.full_name, f.number))
            target = ours.get(f.number)
            if hook is not None:
                hook(src, value, dst, f, self)
            elif target is None or f.message_type is None:
                raise AssertionError(f"{desc.full_name}.{f.name}: a difference without a converter")
            elif f.is_repeated:
                container = getattr(dst, target.name)
                for item in value:
                    self.convert(item, container.add())
            else:
                sub = getattr(dst, target.name)
                sub.SetInParent()
                self.convert(value, sub)

    def _differs(self, f: FieldDescriptor, ours: Any) -> bool:
        if ours is None:
            return True
        if f.message_type is not None:
            return f.message_type.full_name in self.release.changed
        if f.enum_type is not None and ours.enum_type is not None:
            mine = [(v.name, v.number) for v in f.enum_type.values]
            if mine != [(v.name, v.number) for v in ours.enum_type.values]:
                return True
        return (f.type, f.is_repeated) != (ours.type, ours.is_repeated)


def upgrade_to_dataplane(release: str, msg: Message, upgrader: Upgrader | None = None) -> felix.ToDataplane:
    """A stateless conversion of one ToDataplane of `release` (host metadata excepted)."""
    out = felix.ToDataplane()
    (upgrader or Upgrader(schema(release))).convert(msg, out)
    return out


# -- v3.32 and earlier: host metadata in three messages ------------------------------------------
HOST_METADATA_PAYLOADS = frozenset({14, 18, 35, 36, 37, 38})  # ToDataplane field numbers
LAST_SPLIT_HOST_METADATA = "3.32"


@dataclass
class _HostRecord:
    """None: that message was never sent for the host, or was removed."""

    ipv4: str | None = None  # HostMetadataUpdate: the host IPv4 address (a bare IP)
    ipv6: str | None = None  # HostMetadataV6Update: the host IPv6 address
    node: Any = None  # HostMetadataV4V6Update: the node's BGP addresses (CIDRs), AS number, labels

    def empty(self) -> bool:
        return self.ipv4 is None and self.ipv6 is None and self.node is None


@dataclass
class HostMetadataMerge:
    """Per host, what the v3.32-and-earlier messages said; gives the v3.33 message it amounts to.

    v3.33's HostMetadataUpdate carries the node's addresses (BGP address, else its Kubernetes
    address), AS number and labels; earlier releases sent the node part as HostMetadataV4V6Update
    and the host addresses alone as HostMetadataUpdate (v4) and HostMetadataV6Update. The BGP
    address wins where both exist, as in v3.33.
    """

    hosts: dict[str, _HostRecord] = field(default_factory=dict)

    def apply(self, payload: str, m: Any, *, commit: bool = True) -> felix.ToDataplane:
        old = self.hosts.get(m.hostname, _HostRecord())
        new = _HostRecord(old.ipv4, old.ipv6, old.node)
        match payload:
            case "host_metadata_update":
                new.ipv4 = m.ipv4_addr
            case "host_metadata_remove":
                new.ipv4 = None
            case "host_metadata_v6_update":
                new.ipv6 = m.ipv6_addr
            case "host_metadata_v6_remove":
                new.ipv6 = None
            case "host_metadata_v4v6_update":
                new.node = (m.ipv4_addr, m.ipv6_addr, m.asnumber, dict(m.labels))
            case "host_metadata_v4v6_remove":
                new.node = None
            case _:
                raise AssertionError(payload)
        if commit:
            if new.empty():
                self.hosts.pop(m.hostname, None)
            else:
                self.hosts[m.hostname] = new
        if new.empty():
            return felix.ToDataplane(host_metadata_remove=felix.HostMetadataRemove(
                hostname=m.hostname, ipv4_addr=getattr(m, "ipv4_addr", "") if payload.endswith("remove") else ""))
        node_v4, node_v6, asnumber, labels = new.node if new.node is not None else ("", "", "", {})
        return felix.ToDataplane(host_metadata_update=felix.HostMetadataUpdate(
            hostname=m.hostname, ipv4_addr=node_v4 or new.ipv4 or "", ipv6_addr=node_v6 or new.ipv6 or "",
            asnumber=asnumber, labels=labels))
