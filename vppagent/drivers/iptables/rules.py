"""One Felix rule as iptables rules of one family, with the *intended* OR semantics (S4.9).

iptables ANDs everything in a rule and has no OR, but a Felix rule has OR groups: several CIDRs
in a list, and numeric ports together with named-port sets on one side. Felix renders each OR
group as a "match block" of rules that set scratch mark bits; its renderer forgets to reset the
per-block bit, so a 3rd or 4th block is ignored (felix-semantics S4.9). Here every block resets
its bit, so all blocks are enforced:

    clear S0;  alt1 → set S0;  alt2 → set S0            first OR block writes S0 directly
    clear S1;  alt1 → set S1;  ...;  S1 clear → clear S0  each further block ANDs into S0
    net1 → clear S0; ...                                   several negated CIDRs: any one vetoes
    S0 set + the plain matches → action

Groups of one alternative stay inline in the final rule, so most rules are one iptables rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from vppagent.drivers.iptables.names import Marks, clear_mark, mark_clear, mark_set, set_mark
from vppagent.drivers.iptables.table import Rule as TRule
from vppagent.policy.model import ICMP_FOR_FAMILY, Action, IcmpMatch, IPNetwork, PortRange, Rule

SetName = Callable[[str], str]  # Felix IP set id -> kernel set name for this family
MULTIPORT_SLOTS = 15  # multiport takes 15 "slots"; a range uses two
PROTOCOL_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}
LOG_ACTION = '-j LOG --log-prefix "calico-packet: " --log-level 5'


def protocol_text(number: int) -> str:
    return PROTOCOL_NAMES.get(number, str(number))


def port_chunks(ports: Sequence[PortRange]) -> list[str]:
    """Comma lists for multiport, each within 15 slots."""
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for p in sorted(ports):
        text, cost = (str(p.first), 1) if p.first == p.last else (f"{p.first}:{p.last}", 2)
        if used + cost > MULTIPORT_SLOTS:
            chunks.append(",".join(current))
            current, used = [], 0
        current.append(text)
        used += cost
    if current:
        chunks.append(",".join(current))
    return chunks


def _icmp_text(family: int, icmp: IcmpMatch, negate: bool) -> str:
    value = str(icmp.type) if icmp.code is None else f"{icmp.type}/{icmp.code}"
    bang = "! " if negate else ""
    if family == 4:
        return f"-m icmp {bang}--icmp-type {value}"
    return f"-m icmp6 {bang}--icmpv6-type {value}"


def _nets(nets: Sequence[IPNetwork], family: int) -> list[IPNetwork]:
    return [n for n in nets if n.version == family]


class _Builder:
    """Collects the plain (inline) matches and the OR blocks of one rule."""

    def __init__(self, proto: str) -> None:
        self.proto = proto  # "-p tcp" or ""
        self.inline: list[str] = []
        self.blocks: list[list[str]] = []  # each: alternatives (match texts), OR-ed
        self.vetoes: list[str] = []  # matches that each make the rule not match

    def either(self, alternatives: list[str]) -> None:
        if len(alternatives) == 1:
            self.inline.append(alternatives[0])
        elif alternatives:
            self.blocks.append(alternatives)

    def port_side(self, side: str, ports: Sequence[PortRange], named: Sequence[str], set_name: SetName) -> None:
        flag = "--sports" if side == "src" else "--dports"
        alternatives = [f"{self.proto} -m multiport {flag} {c}".strip() for c in port_chunks(ports)]
        alternatives += [f"-m set --match-set {set_name(s)} {side},{side}" for s in named]
        if len(alternatives) == 1:
            # Inline: the protocol is already in the final rule.
            alternatives = [a.removeprefix(self.proto).strip() for a in alternatives]
        self.either(alternatives)


def render_match(rule: Rule, family: int, set_name: SetName, marks: Marks
                 ) -> tuple[list[TRule], str] | None:
    """(block rules to run first, the final rule's match), or None: never matches in `family`."""
    if family not in rule.families():
        return None
    if (rule.icmp is not None or rule.not_icmp is not None) and rule.protocol != ICMP_FOR_FAMILY[family]:
        return None  # ICMP fields only ever match the family's own ICMP
    nets = {name: _nets(getattr(rule, name), family)
            for name in ("src_nets", "not_src_nets", "dst_nets", "not_dst_nets")}
    if any(n.prefixlen == 0 for n in nets["not_src_nets"] + nets["not_dst_nets"]):
        return None  # "not in everything" never matches (felix-semantics S4.7)
    proto = f"-p {protocol_text(rule.protocol)}" if rule.protocol is not None else ""
    b = _Builder(proto)
    if proto:
        b.inline.append(proto)
    if rule.not_protocol is not None:
        b.inline.append(f"! -p {protocol_text(rule.not_protocol)}")
    for flag, pos, neg in (("-s", "src_nets", "not_src_nets"), ("-d", "dst_nets", "not_dst_nets")):
        b.either([f"{flag} {n}" for n in nets[pos]])
        # iptables allows one -s (and one -d) per rule: a negation joins an inline positive CIDR
        # only as a veto rule.
        if len(nets[neg]) == 1 and len(nets[pos]) != 1:
            b.inline.append(f"! {flag} {nets[neg][0]}")
        else:
            b.vetoes.extend(f"{flag} {n}" for n in nets[neg])
    for side, ids, not_ids in (("src", rule.src_ip_sets, rule.not_src_ip_sets),
                               ("dst", rule.dst_ip_sets, rule.not_dst_ip_sets)):
        b.inline.extend(f"-m set --match-set {set_name(s)} {side}" for s in ids)
        b.inline.extend(f"-m set ! --match-set {set_name(s)} {side}" for s in not_ids)
    b.port_side("src", rule.src_ports, rule.src_named_port_sets, set_name)
    b.port_side("dst", rule.dst_ports, rule.dst_named_port_sets, set_name)
    for flag, ports in (("--sports", rule.not_src_ports), ("--dports", rule.not_dst_ports)):
        b.inline.extend(f"-m multiport ! {flag} {c}" for c in port_chunks(ports))
    for side, not_named in (("src", rule.not_src_named_port_sets), ("dst", rule.not_dst_named_port_sets)):
        b.inline.extend(f"-m set ! --match-set {set_name(s)} {side},{side}" for s in not_named)
    b.inline.extend(f"-m set --match-set {set_name(s)} dst,dst" for s in rule.dst_ip_port_sets)
    if rule.icmp is not None:
        b.inline.append(_icmp_text(family, rule.icmp, negate=False))
    if rule.not_icmp is not None:
        b.inline.append(_icmp_text(family, rule.not_icmp, negate=True))
    if not b.blocks and not b.vetoes:
        return [], " ".join(b.inline)
    pre: list[TRule] = []
    s0, s1 = marks.scratch0, marks.scratch1
    for index, alternatives in enumerate(b.blocks):
        bit = s0 if index == 0 else s1
        pre.append(TRule("", clear_mark(bit)))
        pre.extend(TRule(alt, set_mark(bit)) for alt in alternatives)
        if index > 0:
            pre.append(TRule(mark_clear(s1), clear_mark(s0)))
    if not b.blocks:
        pre.append(TRule("", set_mark(s0)))
    pre.extend(TRule(veto, clear_mark(s0)) for veto in b.vetoes)
    return pre, " ".join([mark_set(s0), *b.inline])


def render_rule(rule: Rule, family: int, set_name: SetName, marks: Marks, deny_action: str) -> list[TRule]:
    """The iptables rules for one Felix rule inside a policy or profile chain."""
    rendered = render_match(rule, family, set_name, marks)
    if rendered is None:
        return []
    pre, match = rendered
    if rule.action is Action.DENY:
        return [*pre, TRule(match, deny_action)]
    if rule.action is Action.LOG:
        return [*pre, TRule(match, LOG_ACTION)]
    bit = marks.accept if rule.action is Action.ALLOW else marks.passed
    # Set the bit and leave the policy chain; the endpoint chain acts on the bit.
    return [*pre, TRule(match, set_mark(bit)), TRule(mark_set(bit), "-j RETURN")]
