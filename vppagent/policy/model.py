"""Immutable, validated policy objects built from the state store's protobufs.

Every rule field that changes which packets match is carried; the pass-through fields
(original selectors, service-account and HTTP matches, metadata, rule ids) are not.
Building an object validates it: anything Felix's iptables dataplane could not program, or that
Calico validation forbids, raises `PolicyError` naming the policy (or profile), the rule index and
the direction, so the store can hold the object back (fail closed) instead of guessing.

Over 400 lines on purpose: the typed objects and the one function that builds each from its
protobuf stay side by side, so a field and the check that guards it are read together.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.ipset import IPSet, IPSetType
from vppagent.state.model import STAGED_KINDS, PolicyKey, WorkloadKey, policy_key

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names as Felix's calc graph lower-cases them (libcalico-go updateprocessors/rules.go ToV1).
PROTOCOL_NUMBERS: Mapping[str, int] = {
    "tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "udplite": 136,
}
PROTOCOL_NAMES: Mapping[int, str] = {v: k for k, v in PROTOCOL_NUMBERS.items()}
TCP, UDP, ICMP, ICMPV6, SCTP = 6, 17, 1, 58, 132
# Calico validation allows numeric ports only with these (Protocol.SupportsPorts).
PORT_PROTOCOLS = frozenset({TCP, UDP, SCTP})
ICMP_FOR_FAMILY: Mapping[int, int] = {4: ICMP, 6: ICMPV6}
MAX_PORT = 65535


class PolicyError(ValueError):
    """An object that must not be programmed; the message names the object and rule."""


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    PASS = "pass"
    LOG = "log"


# "" means allow (felix/rules/policy.go); "next-tier" is the older spelling of pass.
_ACTIONS: Mapping[str, Action] = {
    "": Action.ALLOW, "allow": Action.ALLOW, "deny": Action.DENY,
    "pass": Action.PASS, "next-tier": Action.PASS, "log": Action.LOG,
}


class Direction(StrEnum):
    """Spec directions: for a workload, ingress is traffic *to* it (inbound rules)."""

    INGRESS = "ingress"
    EGRESS = "egress"


@dataclass(frozen=True, order=True)
class PortRange:
    first: int
    last: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class IcmpMatch:
    """`icmp_type` (code None: any code) or `icmp_type_code`."""

    type: int
    code: int | None = None

    def matches(self, icmp_type: int, icmp_code: int) -> bool:
        return icmp_type == self.type and (self.code is None or icmp_code == self.code)


@dataclass(frozen=True)
class Rule:
    """One felix.Rule, typed. All set fields AND; lists are ORs unless noted (see evaluate)."""

    action: Action
    ip_version: int = 0  # 0 any, 4, 6
    protocol: int | None = None
    not_protocol: int | None = None
    src_nets: tuple[IPNetwork, ...] = ()
    not_src_nets: tuple[IPNetwork, ...] = ()
    dst_nets: tuple[IPNetwork, ...] = ()
    not_dst_nets: tuple[IPNetwork, ...] = ()
    src_ports: tuple[PortRange, ...] = ()
    not_src_ports: tuple[PortRange, ...] = ()
    dst_ports: tuple[PortRange, ...] = ()
    not_dst_ports: tuple[PortRange, ...] = ()
    # IP set ids. Address sets and service sets AND (one match per id); named-port sets OR
    # with the numeric ports of the same side; every negated list ANDs its negations.
    src_ip_sets: tuple[str, ...] = ()
    not_src_ip_sets: tuple[str, ...] = ()
    dst_ip_sets: tuple[str, ...] = ()
    not_dst_ip_sets: tuple[str, ...] = ()
    src_named_port_sets: tuple[str, ...] = ()
    not_src_named_port_sets: tuple[str, ...] = ()
    dst_named_port_sets: tuple[str, ...] = ()
    not_dst_named_port_sets: tuple[str, ...] = ()
    dst_ip_port_sets: tuple[str, ...] = ()
    icmp: IcmpMatch | None = None
    not_icmp: IcmpMatch | None = None

    def address_set_ids(self) -> tuple[str, ...]:
        return self.src_ip_sets + self.not_src_ip_sets + self.dst_ip_sets + self.not_dst_ip_sets

    def ip_port_set_ids(self) -> tuple[str, ...]:
        return (self.src_named_port_sets + self.not_src_named_port_sets + self.dst_named_port_sets
                + self.not_dst_named_port_sets + self.dst_ip_port_sets)

    def families(self) -> tuple[int, ...]:
        """Families this rule is rendered for (FilterRuleToIPVersion): the ip_version, and a
        non-empty CIDR list (negated ones too) with no CIDR of a family drops that family."""
        result = []
        for family in (4, 6):
            if self.ip_version not in (0, family):
                continue
            nets = (self.src_nets, self.not_src_nets, self.dst_nets, self.not_dst_nets)
            if any(lst and not any(n.version == family for n in lst) for lst in nets):
                continue
            result.append(family)
        return tuple(result)


@dataclass(frozen=True)
class Policy:
    key: PolicyKey
    inbound_rules: tuple[Rule, ...]
    outbound_rules: tuple[Rule, ...]

    @property
    def staged(self) -> bool:
        return self.key.kind in STAGED_KINDS

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.inbound_rules if direction is Direction.INGRESS else self.outbound_rules


@dataclass(frozen=True)
class Profile:
    name: str
    inbound_rules: tuple[Rule, ...]
    outbound_rules: tuple[Rule, ...]

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.inbound_rules if direction is Direction.INGRESS else self.outbound_rules


@dataclass(frozen=True)
class Tier:
    name: str
    ingress_policies: tuple[PolicyKey, ...]
    egress_policies: tuple[PolicyKey, ...]
    default_action: str  # exactly "Pass" falls through; anything else denies at end of tier

    def policies(self, direction: Direction) -> tuple[PolicyKey, ...]:
        return self.ingress_policies if direction is Direction.INGRESS else self.egress_policies

    @property
    def ends_with_pass(self) -> bool:
        return self.default_action == "Pass"

    @staticmethod
    def from_proto(pb: felix.TierInfo) -> Tier:
        return Tier(pb.name, tuple(policy_key(p) for p in pb.ingress_policies),
                    tuple(policy_key(p) for p in pb.egress_policies), pb.default_action)


@dataclass(frozen=True)
class WorkloadEndpoint:
    key: WorkloadKey
    name: str
    active: bool  # state == "active"; the proto default "" is admin-down
    profile_ids: tuple[str, ...]
    ipv4_nets: tuple[IPNetwork, ...]
    ipv6_nets: tuple[IPNetwork, ...]
    tiers: tuple[Tier, ...]
    # Sources the workload may send from besides its own addresses (the pod annotation
    # cni.projectcalico.org/allowedSourcePrefixes); every other source is spoofed and dropped.
    allowed_spoofed_sources: tuple[IPNetwork, ...] = ()

    @staticmethod
    def from_proto(key: WorkloadKey, pb: felix.WorkloadEndpoint) -> WorkloadEndpoint:
        return WorkloadEndpoint(
            key, pb.name, pb.state == "active", tuple(pb.profile_ids),
            _endpoint_nets(pb.ipv4_nets, "ipv4_nets"), _endpoint_nets(pb.ipv6_nets, "ipv6_nets"),
            tuple(Tier.from_proto(t) for t in pb.tiers),
            _endpoint_nets(pb.allow_spoofed_source_prefixes, "allow_spoofed_source_prefixes"))


def _endpoint_nets(texts: Iterable[str], field: str) -> tuple[IPNetwork, ...]:
    """An endpoint's prefixes; one that does not parse is the endpoint's error, naming the field."""
    try:
        return tuple(_net(t) for t in texts)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


@dataclass(frozen=True)
class HostEndpoint:
    id: str
    name: str
    profile_ids: tuple[str, ...]
    tiers: tuple[Tier, ...]
    untracked_tiers: tuple[Tier, ...]
    pre_dnat_tiers: tuple[Tier, ...]
    forward_tiers: tuple[Tier, ...]
    expected_addrs: tuple[IPAddress, ...]

    @staticmethod
    def from_proto(endpoint_id: str, pb: felix.HostEndpoint) -> HostEndpoint:
        def tiers(lst: Iterable[felix.TierInfo]) -> tuple[Tier, ...]:
            return tuple(Tier.from_proto(t) for t in lst)

        addrs = [*pb.expected_ipv4_addrs, *pb.expected_ipv6_addrs]
        return HostEndpoint(endpoint_id, pb.name, tuple(pb.profile_ids), tiers(pb.tiers),
                            tiers(pb.untracked_tiers), tiers(pb.pre_dnat_tiers),
                            tiers(pb.forward_tiers), tuple(ipaddress.ip_address(a) for a in addrs))


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text.strip(), strict=False)


@dataclass(frozen=True)
class ParsedIPSet:
    """An IP set's members, typed: address sets as networks (an IP member is a /32 or /128),
    IP_AND_PORT sets as (address, protocol number, port)."""

    id: str
    type: IPSetType
    nets: tuple[IPNetwork, ...]
    ip_ports: frozenset[tuple[IPAddress, int, int]]

    @staticmethod
    def from_ipset(s: IPSet) -> ParsedIPSet:
        if s.invalid:
            raise PolicyError(f"IP set {s.id}: invalid members {', '.join(map(repr, s.invalid))}")
        if s.type is IPSetType.IP_AND_PORT:
            ip_ports = set()
            for m in s.members:
                addr, _, proto_port = m.partition(",")
                proto, _, port = proto_port.partition(":")
                ip_ports.add((ipaddress.ip_address(addr), PROTOCOL_NUMBERS[proto], int(port)))
            return ParsedIPSet(s.id, s.type, (), frozenset(ip_ports))
        nets = sorted((_net(m) for m in s.members), key=lambda n: (n.version, n))
        return ParsedIPSet(s.id, s.type, tuple(nets), frozenset())

    def contains_address(self, addr: IPAddress) -> bool:
        return any(addr in n for n in self.nets if n.version == addr.version)

    def contains_ip_port(self, addr: IPAddress, proto: int, port: int) -> bool:
        return (addr, proto, port) in self.ip_ports


# -- building and validating rules -------------------------------------------------------------


class _RuleContext:
    """Where a rule lives, for error messages: `policy ns/name (rule 3, inbound): …`."""

    def __init__(self, owner: str, index: int, direction: str) -> None:
        self.prefix = f"{owner} (rule {index}, {direction})"

    def error(self, message: str) -> PolicyError:
        return PolicyError(f"{self.prefix}: {message}")


def _protocol(pb: felix.Protocol, field: str, ctx: _RuleContext) -> tuple[int | None, str | None]:
    which = pb.WhichOneof("number_or_name")
    if which is None:
        return None, None
    if which == "number":
        if not 1 <= pb.number <= 255:
            raise ctx.error(f"{field} number {pb.number} out of range 1-255")
        return pb.number, None
    name = pb.name.strip().lower()
    if name.isdigit() and 1 <= int(name) <= 255:
        return int(name), None
    if name not in PROTOCOL_NUMBERS:
        raise ctx.error(f"unknown {field} name {pb.name!r}")
    return PROTOCOL_NUMBERS[name], name


def _nets(texts: Sequence[str], field: str, ctx: _RuleContext) -> tuple[IPNetwork, ...]:
    out = []
    for t in texts:
        try:
            out.append(_net(t))
        except ValueError:
            raise ctx.error(f"bad CIDR {t!r} in {field}") from None
    return tuple(out)


def _ports(ranges: Sequence[felix.PortRange], field: str, ctx: _RuleContext) -> tuple[PortRange, ...]:
    out = []
    for r in ranges:
        # A PortRange without `last` (0) is a single port (the JSON mapping drops zero values).
        last = r.last if r.last else r.first
        if not (0 <= r.first <= MAX_PORT and 0 <= last <= MAX_PORT):
            raise ctx.error(f"{field} range {r.first}-{last} outside 0-{MAX_PORT}")
        if r.first > last:
            raise ctx.error(f"{field} range {r.first}-{last} has first > last")
        out.append(PortRange(r.first, last))
    return tuple(out)


def _icmp(pb: felix.Rule, type_field: str, code_field: str, ctx: _RuleContext) -> IcmpMatch | None:
    if pb.HasField(type_field):
        t = getattr(pb, type_field)
        if not 0 <= t <= 255:
            raise ctx.error(f"{type_field} {t} outside 0-255")
        return IcmpMatch(t)
    if pb.HasField(code_field):
        tc = getattr(pb, code_field)
        if not (0 <= tc.type <= 255 and 0 <= tc.code <= 255):
            raise ctx.error(f"{code_field} {tc.type}/{tc.code} outside 0-255")
        return IcmpMatch(tc.type, tc.code)
    return None


def action_of(text: str) -> Action | None:
    """A rule's action as Felix spells it (any case, spaces around), None when unknown."""
    return _ACTIONS.get(text.strip().lower())


def build_rule(pb: felix.Rule, ctx: _RuleContext) -> Rule:
    action = action_of(pb.action)
    if action is None:
        raise ctx.error(f"unknown action {pb.action!r}")
    ip_version = int(pb.ip_version)
    if ip_version not in (0, 4, 6):
        raise ctx.error(f"ip_version {ip_version} is not 0, 4 or 6")
    protocol, proto_name = _protocol(pb.protocol, "protocol", ctx)
    not_protocol, _ = _protocol(pb.not_protocol, "not_protocol", ctx)
    if protocol is not None and not_protocol is not None:
        # iptables refuses "-p X ! -p Y" (felix-semantics S4.2/S13.3): reject, don't guess.
        raise ctx.error("protocol and not_protocol in one rule cannot be programmed")
    # The calc graph gives icmp/icmpv6 names their family (felix/calc/rule_convert.go).
    implied = {"icmp": 4, "icmpv6": 6}.get(proto_name or "")
    if implied is not None:
        if ip_version not in (0, implied):
            raise ctx.error(f"mixed families: protocol {proto_name} with ip_version {ip_version}")
        ip_version = implied
    rule = Rule(
        action=action, ip_version=ip_version, protocol=protocol, not_protocol=not_protocol,
        src_nets=_nets(pb.src_net, "src_net", ctx), not_src_nets=_nets(pb.not_src_net, "not_src_net", ctx),
        dst_nets=_nets(pb.dst_net, "dst_net", ctx), not_dst_nets=_nets(pb.not_dst_net, "not_dst_net", ctx),
        src_ports=_ports(pb.src_ports, "src_ports", ctx),
        not_src_ports=_ports(pb.not_src_ports, "not_src_ports", ctx),
        dst_ports=_ports(pb.dst_ports, "dst_ports", ctx),
        not_dst_ports=_ports(pb.not_dst_ports, "not_dst_ports", ctx),
        src_ip_sets=tuple(pb.src_ip_set_ids), not_src_ip_sets=tuple(pb.not_src_ip_set_ids),
        dst_ip_sets=tuple(pb.dst_ip_set_ids), not_dst_ip_sets=tuple(pb.not_dst_ip_set_ids),
        src_named_port_sets=tuple(pb.src_named_port_ip_set_ids),
        not_src_named_port_sets=tuple(pb.not_src_named_port_ip_set_ids),
        dst_named_port_sets=tuple(pb.dst_named_port_ip_set_ids),
        not_dst_named_port_sets=tuple(pb.not_dst_named_port_ip_set_ids),
        dst_ip_port_sets=tuple(pb.dst_ip_port_set_ids),
        icmp=_icmp(pb, "icmp_type", "icmp_type_code", ctx),
        not_icmp=_icmp(pb, "not_icmp_type", "not_icmp_type_code", ctx),
    )
    _check_rule(rule, ctx)
    return rule


def _check_rule(rule: Rule, ctx: _RuleContext) -> None:
    all_nets = rule.src_nets + rule.not_src_nets + rule.dst_nets + rule.not_dst_nets
    versions = {n.version for n in all_nets}
    if len(versions) > 1:
        raise ctx.error("mixed families: IPv4 and IPv6 CIDRs in one rule")
    if versions and rule.ip_version and versions != {rule.ip_version}:
        raise ctx.error(f"mixed families: ip_version {rule.ip_version} with IPv{versions.pop()} CIDRs")
    has_ports = rule.src_ports or rule.not_src_ports or rule.dst_ports or rule.not_dst_ports
    if has_ports and rule.protocol not in PORT_PROTOCOLS:
        raise ctx.error("numeric ports need protocol tcp, udp or sctp")
    if rule.icmp is not None or rule.not_icmp is not None:
        if rule.protocol not in (ICMP, ICMPV6):
            raise ctx.error("ICMP type/code needs protocol icmp or icmpv6")
        family = 4 if rule.protocol == ICMP else 6
        if rule.ip_version not in (0, family) or (versions and versions != {family}):
            raise ctx.error(f"mixed families: {PROTOCOL_NAMES[rule.protocol]} match in an "
                            f"IPv{rule.ip_version or versions.pop()} rule")


def _check_ipset_refs(rule: Rule, ipsets: Mapping[str, IPSet], ctx: _RuleContext) -> None:
    wanted = [(i, False) for i in rule.address_set_ids()] + [(i, True) for i in rule.ip_port_set_ids()]
    for set_id, needs_ports in wanted:
        s = ipsets.get(set_id)
        if s is None:
            raise ctx.error(f"references missing IP set {set_id!r}")
        if s.invalid:
            raise ctx.error(f"IP set {set_id!r} has invalid members {', '.join(map(repr, s.invalid))}")
        # Felix never mixes these (felix-semantics S5.4); their meaning is undefined, so refuse.
        if needs_ports != (s.type is IPSetType.IP_AND_PORT):
            usage = "an ip,proto:port" if needs_ports else "an address"
            raise ctx.error(f"IP set {set_id!r} of type {s.type.name} used as {usage} set")


_BUILT: dict[bytes, Rule] = {}  # a rule's message (serialized) -> the rule: see build_rules
BUILT_BOUND = 1 << 16


def build_rules(owner: str, direction: str, pbs: Iterable[felix.Rule],
                ipsets: Mapping[str, IPSet] | None) -> tuple[Rule, ...]:
    """Build and validate a rule list; with `ipsets`, also check every set reference.

    A rule is remembered by its message's bytes (deterministic serialization: equal bytes,
    equal message, the same Rule, wherever it stands): every state version's catalog, and the
    classifier gate's rewritten copies of a list's policies, build mostly rules built before,
    and building one costs ten times serializing it. Only rules that built are remembered (an
    error names its own place), and set references are checked every time."""
    rules = []
    for index, pb in enumerate(pbs):
        data = pb.SerializeToString(deterministic=True)
        rule = _BUILT.get(data)
        if rule is None:
            rule = build_rule(pb, _RuleContext(owner, index, direction))
            if len(_BUILT) >= BUILT_BOUND:
                _BUILT.clear()  # (a new generation: what is still used comes back at once)
            _BUILT[data] = rule
        if ipsets is not None:
            _check_ipset_refs(rule, ipsets, _RuleContext(owner, index, direction))
        rules.append(rule)
    return tuple(rules)


def policy_owner(key: PolicyKey) -> str:
    name = f"{key.namespace}/{key.name}" if key.namespace else key.name
    return f"policy {name}" + (f" [{key.kind}]" if key.kind else "")


def build_policy(key: PolicyKey, pb: felix.Policy, ipsets: Mapping[str, IPSet] | None = None) -> Policy:
    owner = policy_owner(key)
    return Policy(key, build_rules(owner, "inbound", pb.inbound_rules, ipsets),
                  build_rules(owner, "outbound", pb.outbound_rules, ipsets))


def build_profile(name: str, pb: felix.Profile, ipsets: Mapping[str, IPSet] | None = None) -> Profile:
    owner = f"profile {name}"
    return Profile(name, build_rules(owner, "inbound", pb.inbound_rules, ipsets),
                   build_rules(owner, "outbound", pb.outbound_rules, ipsets))


def validate_policy(key: PolicyKey, policy_pb: felix.Policy, ipsets: Mapping[str, IPSet]) -> None:
    """Raise PolicyError if the policy must be held back (bad fields or IP set references).

    Staged policies are checked too: they are never programmed, but a bad one should be
    reported when it arrives rather than when someone promotes it.
    """
    build_policy(key, policy_pb, ipsets)


def validate_profile(name: str, profile_pb: felix.Profile, ipsets: Mapping[str, IPSet]) -> None:
    """Raise PolicyError if the profile must be held back."""
    build_profile(name, profile_pb, ipsets)
