"""The compiler as it was before issue 15, kept only as bench/compile.py's baseline (the agent never imports it).

It is exact too (same verdicts); the current compiler is vppagent.policy.compile. What follows
is its original description.

Compile one endpoint and direction into a flat first-match list of positive rules.

The target is the VPP ACL plugin: each FlatRule is one ACL rule (one family, one source and
one destination prefix, a protocol or 0 for any, two L4 ranges), first match wins, and the
list's `default_action` applies when nothing matches. The list is exact: for every packet,
`first_match(compile_endpoint(...))` equals `evaluate.verdict(...)` (the property tests).

How the tree becomes a list (worked example: docs/policy-mapping.md):
- Lists are built back to front. The "continuation" is the already-built tail: what a packet
  that falls through the rules seen so far gets. Profiles come first (ending in a catch-all
  deny), then the tiers from the last to the first.
- allow / deny rule: its region (as boxes) with its action, in front of the continuation.
- pass rule: its region intersected with each rule of the list *after the current tier*, so
  packets in the region get exactly the verdict of the following tiers (or profiles).
- End of tier: a catch-all deny, unless the default action is exactly "Pass".
- Negations: the rule's positive boxes P minus the negated boxes N, either by complement
  (prefix and range complements) or, when cheaper, by an "exception" block: (P ∩ N) intersected
  with the continuation, placed first, so those packets get what they would get without the
  rule. Both are exact; the smaller is chosen, deterministically.
- IP sets: members become prefixes (aggregated); several sets in one rule intersect; named
  ports and service sets become (/32 or /128, protocol, port) boxes.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from vppagent.policy.boxes import (
    ANY_PROTO,
    FULL_L4,
    Box,
    covers,
    full_box,
    intersect,
    is_full,
    subtract_all,
    width,
)
from vppagent.policy.catalog import Catalog, as_catalog
from vppagent.policy.evaluate import IPIP, WorkloadRef
from vppagent.policy.flat import CompiledList, FlatAction, FlatRule
from vppagent.policy.model import (
    ICMP_FOR_FAMILY,
    PROTOCOL_NAMES,
    TCP,
    UDP,
    Action,
    Direction,
    HostEndpoint,
    IPNetwork,
    PortRange,
    Rule,
    Tier,
    policy_owner,
)
from vppagent.policy.rule_boxes import CompileError, RuleBoxes, RuleLimitExceeded
from vppagent.state.model import STAGED_KINDS, DataplaneState

DEFAULT_RULE_LIMIT = 20_000


# -- building the list ----------------------------------------------------------------------------

Entry = tuple[Box, FlatAction, str]  # box, action, origin (what decided, for trace)


def _box_cost(box: Box) -> int:
    """VPP rules this box becomes (a protocol range is one rule per protocol)."""
    if (box.proto_lo, box.proto_hi) == ANY_PROTO and (box.a_lo, box.a_hi) == FULL_L4 and \
            (box.b_lo, box.b_hi) == FULL_L4:
        return 1
    return box.proto_hi - box.proto_lo + 1


class _Builder:
    """The continuation, stored reversed (rev[-1] is the first rule) so that putting rules in
    front is an append and the tail after any point stays addressable by its length."""

    def __init__(self, fam: RuleBoxes) -> None:
        self.fam = fam
        self.rev: list[Entry] = []

    def push(self, entries: Sequence[Entry]) -> None:
        self.rev.extend(reversed(entries))
        if len(self.rev) > 4 * self.fam.limit:
            raise RuleLimitExceeded(f"more than {4 * self.fam.limit} intermediate rules")

    def tail(self, length: int) -> list[Entry]:
        """The continuation as it was when it had `length` entries, in first-match order."""
        return self.rev[length - 1::-1] if length else []

    def catch_all(self, action: FlatAction, origin: str) -> None:
        self.push([(full_box(), action, origin)])

    def rules(self, items: Sequence[tuple[Rule, str]], pass_len: int) -> None:
        """Rules in order; a pass goes to the continuation of length `pass_len`."""
        for rule, origin in reversed(items):
            if rule.action is not Action.LOG:
                self.rule(rule, origin, pass_len)

    def rule(self, rule: Rule, origin: str, pass_len: int) -> None:
        p, n = self.fam.rule_boxes(rule)
        if not p:
            return
        w, limit = self.fam.w, self.fam.limit
        if rule.action is Action.PASS:
            if pass_len == len(self.rev):
                return  # passing here is the same as falling through
            target = [(b, a, f"{o} (after pass: {origin})") for b, a, o in self.tail(pass_len)]
        else:
            target = [(full_box(), "allow" if rule.action is Action.ALLOW else "deny", origin)]

        def aim(region: list[Box], verdicts: list[Entry]) -> list[Entry]:
            out = []
            for r in region:
                for box, action, why in verdicts:
                    m = intersect(r, box, w)
                    if m is not None:
                        out.append((m, action, why))
                if len(out) > 4 * limit:
                    raise RuleLimitExceeded(f"{origin}: more than {4 * limit} rules")
            return out

        if not n:
            self.push(aim(p, target))
            return
        # Complement: the region P \ N gets the rule's verdicts.
        # Exception: packets in P ∩ N first get the continuation's verdicts, then P the rule's.
        # Both are exact; take the one with the smaller bound on VPP rules (ties: complement).
        overlaps = [m for m in (intersect(a, b, w) for a in p for b in n) if m is not None]
        cont_len = len(self.rev)
        exception_bound = sum(map(_box_cost, overlaps)) * cont_len + sum(map(_box_cost, p)) * len(target)
        # Stop complementing as soon as it cannot win.
        region = subtract_all(p, n, w, min(4 * limit, exception_bound // len(target) + 1))
        if region is not None and sum(map(_box_cost, region)) * len(target) <= exception_bound:
            self.push(aim(region, target))
        else:
            self.push(aim(overlaps, self.tail(cont_len)) + aim(p, target))


@functools.lru_cache(maxsize=65536)
def _network(family: int, addr: int, length: int) -> IPNetwork:
    return ipaddress.IPv4Network((addr, length)) if family == 4 else ipaddress.IPv6Network((addr, length))


def _vpp_rules(entry: Entry, family: int) -> list[FlatRule]:
    """One box → VPP rules: per protocol, L4 ranges as VPP reads that protocol (see boxes)."""
    box, action, origin = entry
    src, dst = _network(family, box.src, box.src_len), _network(family, box.dst, box.dst_len)
    full = PortRange(*FULL_L4)
    if _box_cost(box) == 1 and (box.proto_lo, box.proto_hi) == ANY_PROTO:
        return [FlatRule(action, family, src, dst, 0, full, full, origin)]
    out = []
    icmp = ICMP_FOR_FAMILY[family]
    for proto in range(box.proto_lo, box.proto_hi + 1):
        a, b = (box.a_lo, box.a_hi), (box.b_lo, box.b_hi)
        if proto == icmp:
            a, b = (a[0], min(a[1], 255)), (b[0], min(b[1], 255))
            if a[0] > a[1] or b[0] > b[1]:
                continue
            a = FULL_L4 if a == (0, 255) else a
            b = FULL_L4 if b == (0, 255) else b
        elif proto not in (TCP, UDP):
            if not (a[0] == 0 and b[0] == 0):
                continue  # VPP reads 0 for this protocol's L4 fields
            a = b = FULL_L4
        out.append(FlatRule(action, family, src, dst, proto, PortRange(*a), PortRange(*b), origin))
    return out


def _finish(entries: list[Entry], family: int) -> tuple[list[FlatRule], FlatAction]:
    """Drop what can never match, and fold the trailing catch-all into a family default."""
    w = width(family)
    kept: list[Entry] = []
    seen: set[Box] = set()
    broad: list[Box] = []  # earlier rules with no address constraint: the likely shadows
    for e in entries:
        if e[0] in seen:
            continue
        seen.add(e[0])
        # Shadowed by one earlier rule: all of them while the list is short, then only the
        # broad ones (the check is only an optimisation, so it is bounded).
        if any(covers(k, e[0], w) for k in (broad if len(kept) > 200 else (k[0] for k in kept))):
            continue
        kept.append(e)
        if is_full(e[0]):
            break
        if e[0].src_len == 0 and e[0].dst_len == 0 and len(broad) < 64:
            broad.append(e[0])
    assert kept and is_full(kept[-1][0]), "every list ends in a catch-all"
    default = kept.pop()[1]
    while kept and kept[-1][1] == default:
        kept.pop()  # the default would decide the same
    rules = [r for e in kept for r in _vpp_rules(e, family)]
    return rules, default


def _combine(per_family: dict[int, tuple[list[FlatRule], FlatAction]]) -> tuple[list[FlatRule], FlatAction]:
    defaults = {d for _, d in per_family.values()}
    default: FlatAction = "allow" if defaults == {"allow"} else "deny"
    rules: list[FlatRule] = []
    for family in (4, 6):
        fam_rules, fam_default = per_family[family]
        rules += fam_rules
        if fam_default != default:
            any_net = ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")
            full = PortRange(*FULL_L4)
            rules.append(FlatRule(fam_default, family, any_net, any_net, 0, full, full, "family default"))
    return rules, default


# -- endpoints ------------------------------------------------------------------------------------


def _tiers(b: _Builder, cat: Catalog, tiers: Sequence[Tier], d: Direction, *, end_of_tier_drop: bool) -> int:
    """Tiers in front of the current continuation (S3.1); returns the number of source rules."""
    count = 0
    for tier in reversed(tiers):
        keys = tier.policies(d)
        live = [cat.policy(k) for k in keys if k.kind not in STAGED_KINDS]
        if not live:
            continue  # no policies in this direction, or only staged ones: the tier is skipped
        next_len = len(b.rev)
        if end_of_tier_drop and not tier.ends_with_pass:
            b.catch_all("deny", f"tier {tier.name}: end of tier")
        items = [(rule, f"tier {tier.name}, {policy_owner(pol.key)} rule {i}")
                 for pol in live for i, rule in enumerate(pol.rules(d))]
        count += len(items)
        b.rules(items, next_len)
    return count


def _profiles(b: _Builder, cat: Catalog, profile_ids: Sequence[str], d: Direction) -> int:
    b.catch_all("deny", "no profile matched")
    count = 0
    for name in reversed(profile_ids):
        rules = cat.profile(name).rules(d)
        count += len(rules)
        b.rules([(rule, f"profile {name} rule {i}") for i, rule in enumerate(rules)], len(b.rev))
    return count


def _encap_drops(cat: Catalog) -> list[Entry]:
    """S2 step 6, as in evaluate.encap_drop."""
    out: list[Entry] = []
    if not cat.config_bool("AllowVXLANPacketsFromWorkloads"):
        port = cat.vxlan_port
        out.append((full_box()._replace(proto_lo=UDP, proto_hi=UDP, b_lo=port, b_hi=port), "deny",
                    "VXLAN from workload"))
    if not cat.config_bool("AllowIPIPPacketsFromWorkloads"):
        out.append((full_box()._replace(proto_lo=IPIP, proto_hi=IPIP), "deny", "IPIP from workload"))
    return out


@contextmanager
def _naming(what: str) -> Iterator[None]:
    """Errors from deep inside name the endpoint and direction they are about."""
    try:
        yield
    except RuleLimitExceeded as exc:
        raise RuleLimitExceeded(f"{what}: {exc}") from None
    except CompileError as exc:
        raise CompileError(f"{what}: {exc}") from None


def _check_limit(rules: list[FlatRule], limit: int, what: str) -> None:
    if len(rules) > limit:
        raise RuleLimitExceeded(f"{what}: {len(rules)} rules exceed the limit of {limit}")


def compile_endpoint(state: DataplaneState | Catalog, endpoint: WorkloadRef, direction: Direction | str,
                     *, rule_limit: int = DEFAULT_RULE_LIMIT) -> CompiledList:
    """The workload endpoint's chain (evaluate.verdict without conntrack) as a flat list.

    Raises PolicyError (a referenced object is missing or invalid), CompileError (a match
    VPP cannot express) or RuleLimitExceeded: fail closed, never a partial list.
    """
    cat = as_catalog(state)
    ep = cat.workload(endpoint)
    d = Direction(direction)
    what = f"workload endpoint {ep.key} {d.value}"
    per_family = {}
    source = 0
    with _naming(what):
        for family in (4, 6):
            b = _Builder(RuleBoxes(cat, family, rule_limit))
            if not ep.active:
                b.catch_all("deny", "endpoint admin down")
            else:
                source = _profiles(b, cat, ep.profile_ids, d)
                source += _tiers(b, cat, ep.tiers, d, end_of_tier_drop=True)
                if d is Direction.EGRESS:
                    b.push(_encap_drops(cat))
            per_family[family] = _finish(b.tail(len(b.rev)), family)
    rules, default = _combine(per_family)
    _check_limit(rules, rule_limit, what)
    return CompiledList(str(ep.key), d.value, tuple(rules), default, source)


def _failsafe_entries(cat: Catalog, d: Direction, family: int, *, raw: bool) -> list[Entry]:
    """evaluate.failsafe_accepts as boxes (remote address is src on ingress, dst on egress)."""
    out: list[Entry] = []
    groups = [(cat.failsafe_inbound if d is Direction.INGRESS else cat.failsafe_outbound, "b")]
    if raw:
        groups.append((cat.failsafe_outbound if d is Direction.INGRESS else cat.failsafe_inbound, "a"))
    for entries, port_field in groups:
        for f in entries:
            if f.net is not None and f.net.version != family:
                continue
            if f.proto not in (TCP, UDP):
                raise CompileError(f"failsafe {PROTOCOL_NAMES.get(f.proto, f.proto)}:{f.port} "
                                   "cannot be matched by VPP ACLs")
            box = full_box()._replace(proto_lo=f.proto, proto_hi=f.proto)
            box = box._replace(b_lo=f.port, b_hi=f.port) if port_field == "b" else \
                box._replace(a_lo=f.port, a_hi=f.port)
            if f.net is not None:
                a, n = int(f.net.network_address), f.net.prefixlen
                box = box._replace(src=a, src_len=n) if d is Direction.INGRESS else box._replace(dst=a, dst_len=n)
            out.append((box, "allow", f"failsafe {PROTOCOL_NAMES[f.proto]}:{f.port}"))
    return out


def compile_host_endpoint(state: DataplaneState | Catalog, hep: str | HostEndpoint, direction: Direction | str,
                          *, rule_limit: int = DEFAULT_RULE_LIMIT) -> CompiledList:
    """evaluate.host_endpoint_verdict as one flat list: raw (untracked) and mangle (pre-DNAT)
    stages, whose fall-through and failsafes lead on to the filter stage (failsafes, tiers,
    profiles, drop)."""
    cat = as_catalog(state)
    ep = cat.host_endpoint(hep)
    d = Direction(direction)
    per_family = {}
    source = 0
    with _naming(f"host endpoint {ep.id} {d.value}"):
        for family in (4, 6):
            b = _Builder(RuleBoxes(cat, family, rule_limit))
            source = _profiles(b, cat, ep.profile_ids, d)
            source += _tiers(b, cat, ep.tiers, d, end_of_tier_drop=True)
            b.push(_failsafe_entries(cat, d, family, raw=False))
            stages = [(ep.pre_dnat_tiers, False)] if d is Direction.INGRESS and ep.pre_dnat_tiers else []
            if ep.untracked_tiers:
                stages.append((ep.untracked_tiers, True))
            for tiers, raw in stages:
                next_stage = len(b.rev)
                source += _tiers(b, cat, tiers, d, end_of_tier_drop=False)
                # A failsafe in this stage skips to the next stage: a pass to its continuation.
                safe = [(e[0], nxt) for e in _failsafe_entries(cat, d, family, raw=raw) for nxt in b.tail(next_stage)]
                b.push([(m, act, why) for region, (box, act, why) in safe
                        if (m := intersect(region, box, b.fam.w)) is not None])
            per_family[family] = _finish(b.tail(len(b.rev)), family)
    rules, default = _combine(per_family)
    _check_limit(rules, rule_limit, f"host endpoint {ep.id} {d.value}")
    return CompiledList(f"hep:{ep.id}", d.value, tuple(rules), default, source)


__all__ = ["compile_endpoint"]
