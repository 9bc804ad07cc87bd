"""The reference evaluator: Felix's verdict for one flow's first (NEW) packet.

Written for clarity, straight from ../shared/notes/felix-semantics.md (section numbers in the
comments), with the *intended* semantics where Felix's iptables rendering has bugs (S4.9, S4.10;
DESIGN §6). It is the oracle the compiler and both drivers are tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from vppagent.policy.catalog import Catalog, EndpointToHostAction, Failsafe, as_catalog
from vppagent.policy.model import (
    ICMP,
    ICMP_FOR_FAMILY,
    ICMPV6,
    PROTOCOL_NUMBERS,
    UDP,
    Action,
    Direction,
    HostEndpoint,
    IPAddress,
    IPNetwork,
    ParsedIPSet,
    PortRange,
    Rule,
    Tier,
    WorkloadEndpoint,
    policy_owner,
)
from vppagent.policy.packet import Packet
from vppagent.state.model import STAGED_KINDS, DataplaneState, WorkloadKey

VerdictAction = Literal["allow", "deny", "none"]
IPIP = 4
ChainKind = Literal["normal", "untracked", "pre_dnat", "forward"]


@dataclass(frozen=True)
class Verdict:
    """What decided: `action` is allow/deny, or "none" where Calico gives no verdict (a host
    chain that falls through). `reason` says which step decided; for a rule, `tier`, `policy`
    (or `profile`) and `rule_index` name it."""

    action: VerdictAction
    reason: str
    tier: str | None = None
    policy: str | None = None
    profile: str | None = None
    rule_index: int | None = None

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    def describe(self) -> str:
        where = []
        if self.tier is not None:
            where.append(f"tier {self.tier}")
        if self.policy is not None:
            where.append(self.policy)
        if self.profile is not None:
            where.append(f"profile {self.profile}")
        if self.rule_index is not None:
            where.append(f"rule {self.rule_index}")
        return f"{self.action} ({self.reason}{': ' + ', '.join(where) if where else ''})"


SetLookup = Callable[[str], ParsedIPSet]

# -- S4: one rule against one packet -------------------------------------------------------------


def _in_nets(addr: IPAddress, nets: Sequence[IPNetwork]) -> bool:
    return any(addr in n for n in nets if n.version == addr.version)


def _in_ranges(port: int, ranges: Sequence[PortRange]) -> bool:
    return any(port in r for r in ranges)


def _port_side(addr: IPAddress, port: int, pkt: Packet, ranges: Sequence[PortRange],
               named: Sequence[str], sets: SetLookup) -> bool:
    """S4.5: numeric ranges OR named-port sets; neither given → no constraint."""
    if not ranges and not named:
        return True
    if not pkt.has_ports:
        return False
    return _in_ranges(port, ranges) or any(sets(s).contains_ip_port(addr, pkt.proto, port) for s in named)


def _not_port_side(addr: IPAddress, port: int, pkt: Packet, ranges: Sequence[PortRange],
                   named: Sequence[str], sets: SetLookup) -> bool:
    if ranges and not pkt.has_ports:
        return False  # numeric ports need a port protocol (S4.5); validation makes this moot
    if pkt.has_ports and _in_ranges(port, ranges):
        return False
    # A port-less packet is never in an (ip, proto, port) set, so the negation holds.
    return not (pkt.has_ports and any(sets(s).contains_ip_port(addr, pkt.proto, port) for s in named))


def rule_matches(rule: Rule, pkt: Packet, sets: SetLookup) -> bool:
    """All set criteria AND (S4); intended semantics, so every OR group is enforced (S4.9)."""
    if pkt.family not in rule.families():  # S4.7, including family filtering of CIDR lists
        return False
    if rule.protocol is not None and pkt.proto != rule.protocol:
        return False
    if rule.not_protocol is not None and pkt.proto == rule.not_protocol:
        return False
    if rule.src_nets and not _in_nets(pkt.src, rule.src_nets):
        return False
    if _in_nets(pkt.src, rule.not_src_nets):
        return False
    if rule.dst_nets and not _in_nets(pkt.dst, rule.dst_nets):
        return False
    if _in_nets(pkt.dst, rule.not_dst_nets):
        return False
    # S4.4: one membership test per id, ANDed; negated: member of none.
    if not all(sets(s).contains_address(pkt.src) for s in rule.src_ip_sets):
        return False
    if any(sets(s).contains_address(pkt.src) for s in rule.not_src_ip_sets):
        return False
    if not all(sets(s).contains_address(pkt.dst) for s in rule.dst_ip_sets):
        return False
    if any(sets(s).contains_address(pkt.dst) for s in rule.not_dst_ip_sets):
        return False
    if not _port_side(pkt.src, pkt.src_port, pkt, rule.src_ports, rule.src_named_port_sets, sets):
        return False
    if not _port_side(pkt.dst, pkt.dst_port, pkt, rule.dst_ports, rule.dst_named_port_sets, sets):
        return False
    if not _not_port_side(pkt.src, pkt.src_port, pkt, rule.not_src_ports, rule.not_src_named_port_sets, sets):
        return False
    if not _not_port_side(pkt.dst, pkt.dst_port, pkt, rule.not_dst_ports, rule.not_dst_named_port_sets, sets):
        return False
    # S4.6: service sets, one (dst ip, proto, dst port) test per id, ANDed.
    for s in rule.dst_ip_port_sets:
        if not (pkt.has_ports and sets(s).contains_ip_port(pkt.dst, pkt.proto, pkt.dst_port)):
            return False
    # S4.8: ICMP criteria, positive or negated, match only the family's ICMP.
    is_icmp = pkt.proto == ICMP_FOR_FAMILY[pkt.family]
    if rule.icmp is not None and not (is_icmp and rule.icmp.matches(pkt.icmp_type, pkt.icmp_code)):
        return False
    return rule.not_icmp is None or (is_icmp and not rule.not_icmp.matches(pkt.icmp_type, pkt.icmp_code))


def first_terminal_rule(rules: Sequence[Rule], pkt: Packet, sets: SetLookup) -> tuple[Action, int] | None:
    """The first matching rule that decides something (log rules only log: S3.2)."""
    for index, rule in enumerate(rules):
        if rule.action is not Action.LOG and rule_matches(rule, pkt, sets):
            return rule.action, index
    return None


# -- S3: tiers, pass, default action, profiles ---------------------------------------------------


def _decided(action: Action) -> VerdictAction:
    return "allow" if action is Action.ALLOW else "deny"


def run_tiers(cat: Catalog, tiers: Sequence[Tier], direction: Direction, pkt: Packet,
              *, end_of_tier_drop: bool = True) -> Verdict | None:
    """S3.1. None: every tier was passed through (no verdict yet)."""
    for tier in tiers:
        keys = tier.policies(direction)
        if not keys:
            continue  # a tier with no policies in this direction is skipped
        live = [cat.policy(k) for k in keys if k.kind not in STAGED_KINDS]
        passed = False
        for policy in live:
            hit = first_terminal_rule(policy.rules(direction), pkt, cat.ipset)
            if hit is None:
                continue
            action, index = hit
            if action is Action.PASS:
                passed = True  # skip the rest of this tier
                break
            return Verdict(_decided(action), "rule", tier.name, policy_owner(policy.key), rule_index=index)
        if passed or not live:  # only staged policies: acts as pass
            continue
        if end_of_tier_drop and not tier.ends_with_pass:
            return Verdict("deny", "end of tier", tier.name)
    return None


def run_profiles(cat: Catalog, profile_ids: Sequence[str], direction: Direction, pkt: Packet) -> Verdict:
    """S3.3: in order; allow/deny decide, pass or no match tries the next; then drop."""
    for name in profile_ids:
        hit = first_terminal_rule(cat.profile(name).rules(direction), pkt, cat.ipset)
        if hit is not None and hit[0] is not Action.PASS:
            return Verdict(_decided(hit[0]), "rule", profile=name, rule_index=hit[1])
    return Verdict("deny", "no profile matched")


# -- S2 / S6: workload endpoints ------------------------------------------------------------------


def first_packet_ct_state(pkt: Packet) -> Literal["new", "invalid", "untracked"]:
    """How conntrack classifies a flow's first packet (S2)."""
    if pkt.proto == ICMP and pkt.family == 4:
        return "new" if pkt.icmp_type in (8, 13, 15, 17) else "invalid"
    if pkt.proto == ICMPV6 and pkt.family == 6:
        if pkt.icmp_type in (128, 139):
            return "new"
        return "untracked" if pkt.icmp_type in (130, 131, 132, 133, 134, 135, 136, 143) else "invalid"
    return "new"


def encap_drop(cat: Catalog, pkt: Packet) -> Verdict | None:
    """S2 step 6: workload egress drops VXLAN and IPIP before any policy."""
    if pkt.proto == UDP and pkt.dst_port == cat.vxlan_port and not cat.config_bool(
            "AllowVXLANPacketsFromWorkloads"):
        return Verdict("deny", "VXLAN from workload")
    if pkt.proto == IPIP and not cat.config_bool("AllowIPIPPacketsFromWorkloads"):
        return Verdict("deny", "IPIP from workload")
    return None


WorkloadRef = WorkloadKey | str | WorkloadEndpoint


def verdict(state: DataplaneState | Catalog, endpoint: WorkloadRef, direction: Direction | str,
            packet: Packet, *, ct: bool = False) -> Verdict:
    """S6: the workload endpoint's verdict for a NEW first packet. Ingress = to the workload.

    With `ct=True`, a first packet conntrack would call INVALID is dropped first (S2 step 3).
    """
    cat = as_catalog(state)
    ep = cat.workload(endpoint)
    d = Direction(direction)
    if not ep.active:
        return Verdict("deny", "endpoint admin down")
    if ct and first_packet_ct_state(packet) == "invalid" and not cat.config_bool(
            "DisableConntrackInvalidCheck"):
        return Verdict("deny", "conntrack invalid")
    if d is Direction.EGRESS:
        dropped = encap_drop(cat, packet)
        if dropped is not None:
            return dropped
    decided = run_tiers(cat, ep.tiers, d, packet)
    return decided if decided is not None else run_profiles(cat, ep.profile_ids, d, packet)


# -- S8: host endpoints ----------------------------------------------------------------------------


def _failsafe_hits(entries: Sequence[Failsafe], pkt: Packet, port: int, remote: IPAddress) -> bool:
    return any(f.proto == pkt.proto and f.port == port and (f.net is None or (
        f.net.version == remote.version and remote in f.net)) for f in entries)


def failsafe_accepts(cat: Catalog, direction: Direction, pkt: Packet, *, raw: bool = False) -> bool:
    """S8.2 failsafes: inbound list on ingress (dst port, src in net), outbound list on egress
    (dst port, dst in net); raw chains also accept the other list matched on the source port."""
    if not pkt.has_ports:
        return False
    if direction is Direction.INGRESS:
        if _failsafe_hits(cat.failsafe_inbound, pkt, pkt.dst_port, pkt.src):
            return True
        return raw and _failsafe_hits(cat.failsafe_outbound, pkt, pkt.src_port, pkt.src)
    if _failsafe_hits(cat.failsafe_outbound, pkt, pkt.dst_port, pkt.dst):
        return True
    return raw and _failsafe_hits(cat.failsafe_inbound, pkt, pkt.src_port, pkt.dst)


def hep_chain(state: DataplaneState | Catalog, hep: str | HostEndpoint, kind: ChainKind,
              direction: Direction | str, pkt: Packet) -> Verdict:
    """One host-endpoint chain (S8.1 table): allow, deny, or "none" (falls through)."""
    cat = as_catalog(state)
    ep = cat.host_endpoint(hep)
    d = Direction(direction)
    if kind == "forward":
        if not ep.forward_tiers:  # keyed on the whole list, not the direction (S8.2 quirk)
            return Verdict("allow", "no forward policy")
        decided = run_tiers(cat, ep.forward_tiers, d, pkt)
        return decided if decided is not None else Verdict("none", "no forward policy matched")
    if failsafe_accepts(cat, d, pkt, raw=kind == "untracked"):
        return Verdict("allow", "failsafe")
    if kind == "normal":
        decided = run_tiers(cat, ep.tiers, d, pkt)
        return decided if decided is not None else run_profiles(cat, ep.profile_ids, d, pkt)
    tiers = ep.untracked_tiers if kind == "untracked" else ep.pre_dnat_tiers
    if kind == "pre_dnat" and d is Direction.EGRESS:
        return Verdict("none", "pre-DNAT policy is ingress only")
    # Untracked and pre-DNAT tiers never deny at end of tier and use no profiles.
    decided = run_tiers(cat, tiers, d, pkt, end_of_tier_drop=False)
    return decided if decided is not None else Verdict("none", f"no {kind} policy matched")


def host_endpoint_verdict(state: DataplaneState | Catalog, hep: str | HostEndpoint,
                          direction: Direction | str, pkt: Packet) -> Verdict:
    """Host-bound (ingress) or host-originated (egress) traffic through a host endpoint:
    raw (untracked) → mangle (pre-DNAT, ingress only) → filter (normal). An allow in raw or
    mangle is final: filter accepts already-accepted packets (S8.2)."""
    cat = as_catalog(state)
    ep = cat.host_endpoint(hep)
    d = Direction(direction)
    stages: list[ChainKind] = []
    if ep.untracked_tiers:  # raw chains exist only for interfaces with untracked policy
        stages.append("untracked")
    if ep.pre_dnat_tiers and d is Direction.INGRESS:
        stages.append("pre_dnat")
    for kind in stages:
        v = hep_chain(cat, ep, kind, d, pkt)
        # A failsafe ACCEPT in raw or mangle ends only that table; filter checks its own.
        if v.action != "none" and v.reason != "failsafe":
            return v
    return hep_chain(cat, ep, "normal", d, pkt)


def workload_to_host_verdict(state: DataplaneState | Catalog, endpoint: WorkloadRef, pkt: Packet) -> Verdict:
    """S7: a workload's packet to the host itself. "none" = RETURN to the host's INPUT chain
    (host endpoint policy is then not applied)."""
    cat = as_catalog(state)
    if pkt.family == 6 and pkt.proto == ICMPV6 and pkt.icmp_type in (130, 131, 132, 133, 135, 136):
        return Verdict("allow", "ICMPv6 neighbour discovery to host")
    egress = verdict(cat, endpoint, Direction.EGRESS, pkt)
    if not egress.allowed:
        return egress
    action: EndpointToHostAction = cat.endpoint_to_host_action
    if action == "ACCEPT":
        return Verdict("allow", "DefaultEndpointToHostAction ACCEPT")
    if action == "RETURN":
        return Verdict("none", "DefaultEndpointToHostAction RETURN")
    return Verdict("deny", "DefaultEndpointToHostAction DROP")


def forward_verdict(state: DataplaneState | Catalog, in_ep: WorkloadRef | HostEndpoint | str | None,
                    out_ep: WorkloadRef | HostEndpoint | str | None, pkt: Packet) -> Verdict:
    """S7 forwarding. Endpoints given as host-endpoint ids must be `HostEndpoint` objects or
    strings prefixed "hep:"; others are workloads. Each chain clears the accept bit, so the last
    chain that runs decides, and any deny is final; no chain accepting → "none"."""
    cat = as_catalog(state)
    accepted = False
    last: Verdict = Verdict("none", "no endpoint chain accepted")

    def hep_of(ref: object) -> HostEndpoint | None:
        if isinstance(ref, HostEndpoint):
            return ref
        if isinstance(ref, str) and ref.startswith("hep:"):
            return cat.host_endpoint(ref[4:])
        return None

    in_hep, out_hep = hep_of(in_ep), hep_of(out_ep)
    # The accept bit may be set by raw (untracked) or mangle (pre-DNAT) on the way in.
    if in_hep is not None:
        raw_kinds: tuple[ChainKind, ...] = ("untracked", "pre_dnat")
        for kind in raw_kinds:
            if (kind == "untracked" and in_hep.untracked_tiers) or (kind == "pre_dnat" and in_hep.pre_dnat_tiers):
                v = hep_chain(cat, in_hep, kind, Direction.INGRESS, pkt)
                if v.action == "deny":
                    return v
                if v.allowed and v.reason != "failsafe":  # failsafes set no accept bit
                    accepted, last = True, v
                    break
    steps: list[tuple[str, object]] = []
    if in_hep is not None and not accepted:
        steps.append(("hep-in", in_hep))
    if in_ep is not None and in_hep is None:
        steps.append(("wl-out", in_ep))
    if out_ep is not None and out_hep is None:
        steps.append(("wl-in", out_ep))
    if out_hep is not None:
        steps.append(("hep-out", out_hep))
    for step, ref in steps:
        if step == "hep-in":
            v = hep_chain(cat, in_hep, "forward", Direction.INGRESS, pkt)  # type: ignore[arg-type]
        elif step == "hep-out":
            v = hep_chain(cat, out_hep, "forward", Direction.EGRESS, pkt)  # type: ignore[arg-type]
        else:
            v = verdict(cat, ref, Direction.EGRESS if step == "wl-out" else Direction.INGRESS, pkt)  # type: ignore[arg-type]
        if v.action == "deny":
            return v
        accepted = v.allowed
        if accepted:
            last = v
    return last if accepted else Verdict("none", "no endpoint chain accepted")


__all__ = [
    "PROTOCOL_NUMBERS",
    "Verdict",
    "failsafe_accepts",
    "first_packet_ct_state",
    "forward_verdict",
    "hep_chain",
    "host_endpoint_verdict",
    "rule_matches",
    "run_profiles",
    "run_tiers",
    "verdict",
    "workload_to_host_verdict",
]
