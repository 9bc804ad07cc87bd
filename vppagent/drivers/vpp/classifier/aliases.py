"""Renaming the IP sets of allow rules to aliases (same members) so the gate (gate.py) can take
part of a set's use: the list is the same, since an alias matches exactly what its set matches.

- `alias_allow_sources`: a set used as the source of allow rules and also otherwise (a deny's
  source, a negation, a destination) is named `<set>\\0allow` in its allow rules; the alias is
  used only as the source of allow rules, so it may be gated, and the set stays in the ACL.
- `split_ports`: an allow rule from one set to numeric destination ports becomes two allow rules
  at the same place, the ports the gate can hold (the set) and the others (`<set>\\0rest`, which
  is never gated); consecutive allow rules whose matches add up to the original's give the same
  first-match verdicts.
- `mark_sources`: for the gate's analysis only (never programmed), each allow rule from a gated
  set gets that set's marker as its source port (gate.py, "markers").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.model import PROTOCOL_NUMBERS, Action, Rule, action_of
from vppagent.state.ipset import IPSet, IPSetType
from vppagent.state.model import DataplaneState, Kind, PolicyKey

MARK = "\x00"  # no IP set id of Felix's has a NUL
ALLOW = f"{MARK}allow"
REST = f"{MARK}rest"
Names = tuple[list[PolicyKey], list[str]]  # the list's policies (not staged) and profiles


def real_set(set_id: str) -> str:
    """The IP set an alias stands for (a set id stands for itself)."""
    return set_id.split(MARK, 1)[0]


def alias_allow_sources(state: DataplaneState, rules: Iterable[Rule],
                        names: Names) -> tuple[DataplaneState, dict[str, str]]:
    """The state with allow rules' sources renamed (module docstring), and alias -> set."""
    allow_src: set[str] = set()
    other: set[str] = set()
    for rule in rules:
        if rule.action is Action.LOG:
            continue
        (allow_src if rule.action is Action.ALLOW else other).update(rule.src_ip_sets)
        other.update((*rule.dst_ip_sets, *rule.not_src_ip_sets, *rule.not_dst_ip_sets, *rule.ip_port_set_ids()))
    split = {s for s in allow_src & other if s in state.ipsets and state.ipsets[s].type is not IPSetType.IP_AND_PORT}
    if not split:
        return state, {}

    def rename(rule: felix.Rule) -> list[felix.Rule] | None:
        if not _allows(rule) or not any(s in split for s in rule.src_ip_set_ids):
            return None
        return [_copy(rule, src=[f"{s}{ALLOW}" if s in split else s for s in rule.src_ip_set_ids])]

    return _rewritten(state, names, rename)


def split_ports(state: DataplaneState, names: Names,
                unfit: dict[str, list[tuple[int, int, int]]]) -> tuple[DataplaneState, dict[str, str]]:
    """The state with each rule from one set of `unfit` split (module docstring): the port
    ranges that meet an unfit (protocol, first port, last port), protocol 0 for any, or the
    whole rule when its ports cannot be split, go to the set's REST alias."""

    def rename(rule: felix.Rule) -> list[felix.Rule] | None:
        ids = list(rule.src_ip_set_ids)
        if not _allows(rule) or len(ids) != 1 or ids[0] not in unfit:
            return None
        proto = _protocol(rule)
        bad = [(lo, hi) for p, lo, hi in unfit[ids[0]] if not (p and proto and p != proto)]
        if not bad:
            return None
        rest = f"{ids[0]}{REST}"
        if not rule.dst_ports or rule.dst_named_port_ip_set_ids:
            return [_copy(rule, src=[rest])]
        fit = [p for p in rule.dst_ports if not any(p.first <= hi and lo <= p.last for lo, hi in bad)]
        off = [p for p in rule.dst_ports if p not in fit]
        if not off:
            return None
        return [r for r in (_copy(rule, ports=fit) if fit else None, _copy(rule, src=[rest], ports=off)) if r]

    return _rewritten(state, names, rename)


def _protocol(rule: felix.Rule) -> int:
    """The rule's protocol number, 0 for any (or a negated one, or a name we do not know)."""
    if rule.HasField("not_protocol"):
        return 0
    which = rule.protocol.WhichOneof("number_or_name")
    if which == "number":
        return rule.protocol.number
    if which == "name":
        name = rule.protocol.name.strip().lower()
        return int(name) if name.isdigit() else PROTOCOL_NUMBERS.get(name, 0)
    return 0


def mark_sources(state: DataplaneState, names: Names, markers: dict[str, int]) -> DataplaneState:
    """The state with each allow rule from a set of `markers` matching only source port
    markers[set] (the rule names no source port: gate.markable checked it)."""

    def rename(rule: felix.Rule) -> list[felix.Rule] | None:
        marked = [markers[s] for s in rule.src_ip_set_ids if s in markers]
        if not _allows(rule) or not marked:
            return None
        return [_copy(rule, src_ports=[felix.PortRange(first=marked[0], last=marked[0])])]

    return _rewritten(state, names, rename)[0]


def _allows(rule: felix.Rule) -> bool:
    """As the model reads the action ("Allow" too: a rule of a candidate left unmarked would put
    its set in L_0 as every address, and the gate would admit anyone there)."""
    return action_of(rule.action) is Action.ALLOW


def _copy(rule: felix.Rule, *, src: list[str] | None = None, ports: list[felix.PortRange] | None = None,
          src_ports: list[felix.PortRange] | None = None) -> felix.Rule:
    out = felix.Rule()
    out.CopyFrom(rule)
    if src is not None:
        del out.src_ip_set_ids[:]
        out.src_ip_set_ids.extend(src)
    if ports is not None:
        del out.dst_ports[:]
        out.dst_ports.extend(ports)
    if src_ports is not None:
        del out.src_ports[:]
        out.src_ports.extend(src_ports)
    return out


def _rewritten(state: DataplaneState, names: Names,
               rename: Callable[[felix.Rule], list[felix.Rule] | None]) -> tuple[DataplaneState, dict[str, str]]:
    """A copy of the state whose policies and profiles in `names` have their inbound rules
    renamed by `rename` (None: the rule stays), with every alias they name as a set."""
    copy = state.copy()
    aliases: dict[str, str] = {}
    policies, profiles = names
    for kind, keys in ((Kind.POLICY, policies), (Kind.PROFILE, profiles)):
        table = copy.tables[kind]
        for key in keys:
            pb = table.get(key)
            if pb is None:
                continue
            rules: list[felix.Rule] = []
            changed = False
            for rule in pb.inbound_rules:
                renamed = rename(rule)
                changed |= renamed is not None
                rules += renamed if renamed is not None else [rule]
            if not changed:
                continue
            new = type(pb)()
            new.CopyFrom(pb)
            del new.inbound_rules[:]
            new.inbound_rules.extend(rules)
            table[key] = new
            aliases.update({a: real_set(a) for r in rules for a in r.src_ip_set_ids if MARK in a})
    for alias in aliases:
        source = state.ipsets.get(alias) or state.ipsets[real_set(alias)]
        copy.tables[Kind.IPSET][alias] = IPSet(alias, IPSetType.NET, source.members)
    return copy, aliases
