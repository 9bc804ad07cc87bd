"""Compile one endpoint and direction into a flat first-match list of positive rules.

The target is the VPP ACL plugin: each FlatRule is one ACL rule (one family, one source and
one destination prefix, a protocol or 0 for any, two L4 ranges), first match wins, and the
list's `default_action` applies when nothing matches. The list is exact: for every packet,
`first_match(compile_endpoint(...))` equals `evaluate.verdict(...)` (the property tests).

How the tree becomes a list (worked example: docs/policy-mapping.md):
- Lists are built back to front. The "continuation" is the already-built tail: what a packet
  that falls through the rules seen so far gets. Profiles come first (ending in a catch-all
  deny), then the tiers from the last to the first.
- allow / deny rule: its region (as boxes) with its action, in front of the continuation.
- pass rule: by first-match order when it is cheap: its region is cut out of the rules between
  it and the end of its tier (the "middle"), so packets in the region meet none of them and go
  on to the following tiers; nothing is copied when the middle's rules lie outside the region.
  Otherwise its region intersected with each rule of the list *after the current tier*, so
  packets in the region get exactly the verdict of the following tiers (or profiles).
- End of tier: a catch-all deny, unless the default action is exactly "Pass".
- Negations: the rule's positive boxes P minus the negated boxes N, either by complement
  (prefix and range complements) or, when cheaper, by an "exception" block: (P ∩ N) intersected
  with the continuation (for a pass: with the middle only), placed first, so those packets get
  what they would get without the rule. Both are exact; the smaller is chosen, deterministically.
- Repeated boxes inside one block are dropped as they are pushed; rule and IP set boxes are
  cached per catalog, and endpoints with the same tiers and profiles share one compile.
  Intersections with long lists go through an index by source prefix (emit.aim).
- IP sets: members become prefixes (aggregated); several sets in one rule intersect; named
  ports and service sets become (/32 or /128, protocol, port) boxes.
"""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from vppagent.policy.boxes import Box, covers, full_box, intersect, is_full, subtract_all
from vppagent.policy.cache import CompileCache
from vppagent.policy.catalog import Catalog, as_catalog
from vppagent.policy.emit import Entry, box_cost, combine, finish, must
from vppagent.policy.emit import aim as aim_entries
from vppagent.policy.evaluate import IPIP, WorkloadRef
from vppagent.policy.flat import CompiledList, FirstMatch, FlatAction, FlatRule, first_match
from vppagent.policy.model import (
    PROTOCOL_NAMES,
    TCP,
    UDP,
    Action,
    Direction,
    HostEndpoint,
    Rule,
    Tier,
    WorkloadEndpoint,
    policy_owner,
)
from vppagent.policy.rule_boxes import CompileError, RuleBoxes, RuleLimitExceeded, shared_rule_boxes
from vppagent.state.model import STAGED_KINDS, DataplaneState

DEFAULT_RULE_LIMIT = 20_000


# -- building the list ----------------------------------------------------------------------------


class _Builder:
    """The continuation, stored reversed (rev[-1] is the first rule) so that putting rules in
    front is an append and the tail after any point stays addressable by its length."""

    def __init__(self, fam: RuleBoxes) -> None:
        self.fam = fam
        self.rev: list[Entry] = []
        # Per pass region (P, N): the boxes carve_pass found it need not touch. A tier's passes
        # are often the same rule (one per policy), and each scans the middle after it, which
        # holds the middles of the passes after it: each box is then looked at once per region.
        self._untouched: dict[tuple[tuple[Box, ...], tuple[Box, ...]], dict[Box, bool]] = {}

    def push(self, entries: Sequence[Entry]) -> None:
        # A box repeated inside one block can never match: its first copy takes every packet.
        # (Tails are only ever cut between blocks, so this holds in every later context too.)
        # Without this, consecutive negated passes copy each other's copies: doubling per pass.
        seen: set[Box] = set()
        block = [e for e in entries if not (e[0] in seen or seen.add(e[0]))]  # type: ignore[func-returns-value]
        self.rev.extend(reversed(block))
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
        label = None
        if rule.action is Action.PASS:
            if pass_len == len(self.rev):
                return  # passing here is the same as falling through
            if self.carve_pass(p, n, origin, pass_len):
                return
            target = self.tail(pass_len)
            label = f" (after pass: {origin})"
        else:
            target = [(full_box(), "allow" if rule.action is Action.ALLOW else "deny", origin)]
        cap = 4 * limit

        def aim(region: list[Box], verdicts: list[Entry], relabel: str | None = None,
                stop_after: int | None = None) -> list[Entry] | None:
            out = aim_entries(region, verdicts, w, relabel, min(cap, stop_after) if stop_after is not None else cap)
            if out is None and stop_after is None:
                raise RuleLimitExceeded(f"{origin}: more than {cap} rules")
            return out

        if not n:
            self.push(must(aim(p, target, label)))
            return
        # Complement: the region P \ N gets the rule's verdicts.
        # Exception: packets in P ∩ N first get the continuation's verdicts, then P the rule's.
        # For a pass, the continuation is the middle M (the rest of this tier) followed by the
        # target, and [M ∩ P ∩ N] + [P ∩ target] + M + target gives every packet what
        # [(M + target) ∩ P ∩ N] + [P ∩ target] + M + target does (a packet of P ∩ N that no
        # M rule takes meets P ∩ target next, which is the target's verdict): only M is copied.
        # Both are exact; take the one with the smaller bound on VPP rules (ties: complement).
        overlaps = [m for m in (intersect(a, b, w) for a in p for b in n) if m is not None]
        cont_len = len(self.rev) - (pass_len if rule.action is Action.PASS else 0)
        exception_bound = sum(map(box_cost, overlaps)) * cont_len + sum(map(box_cost, p)) * len(target)
        # Stop complementing as soon as it cannot win.
        region = subtract_all(p, n, w, min(cap, exception_bound // len(target) + 1))
        if region is not None and sum(map(box_cost, region)) * len(target) <= exception_bound:
            self.push(must(aim(region, target, label)))
        else:
            middle = self.rev[len(self.rev) - cont_len:][::-1]  # first-match order
            self.push(must(aim(overlaps, middle)) + must(aim(p, target, label)))

    def carve_pass(self, p: list[Box], n: list[Box], origin: str, pass_len: int) -> bool:
        """A pass by first-match order: cut the pass region out of the middle M (the rules
        between this pass and the end of its tier, rev[pass_len:]). Packets in the region then
        meet no M rule and go on to the target; every other packet meets M as before. Exact,
        and nothing is copied when M's rules lie outside the region (often: a pass for what a
        policy does not handle). Returns False, changing nothing, when cutting would add more
        boxes than the target has, or when M is long and scanning it would cost more than
        intersecting the region with the target (then the region is aimed at the target
        instead: many passes in one long tier would otherwise scan it once each)."""
        w = self.fam.w
        region = subtract_all(p, n, w, len(p) + 4 * len(n) + 64) if n else p
        if region is None or len(self.rev) - pass_len > max(len(region) * pass_len, 1024):
            return False
        budget = pass_len  # the copy of the target would cost up to this many boxes
        middle: list[Entry] = []
        untouched = self._untouched.setdefault((tuple(p), tuple(n)), {})
        for box, action, why in self.rev[pass_len:]:  # reversed order, kept reversed
            # Untouched when its part in P lies in one N box (the quick test), or misses the region.
            found = untouched.get(box)
            if found is None:
                inside_p = [m for m in (intersect(box, b, w) for b in p) if m is not None]
                found = untouched[box] = all(any(covers(x, m, w) for x in n) for m in inside_p) or \
                    all(intersect(box, r, w) is None for r in region)
            if found:
                middle.append((box, action, why))
                continue
            if is_full(box):
                return False  # an end-of-tier catch-all: cut, it would stop ending the list
            # box \ (P \ N) = (box \ P) ∪ (box ∩ N); the parts may overlap (same action).
            pieces = subtract_all([box], p, w, budget + 1)
            if pieces is not None:
                pieces += [m for m in (intersect(box, x, w) for x in n) if m is not None]
            if pieces is None or len(pieces) - 1 > budget:
                return False
            budget -= len(pieces) - 1
            label = f"{why} (pass cut out: {origin})"
            middle.extend((piece, action, label) for piece in reversed(pieces))
        self.rev[pass_len:] = middle
        return True


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
                     *, rule_limit: int = DEFAULT_RULE_LIMIT, cache: CompileCache | None = None) -> CompiledList:
    """The workload endpoint's chain (evaluate.verdict without conntrack) as a flat list.

    With `cache`, fragments and lists are shared across state versions by content (cache.py):
    a new version recompiles only the lists whose policies, profiles or IP sets changed, and
    reuses the boxes of every rule it has seen before.

    Raises PolicyError (a referenced object is missing or invalid), CompileError (a match
    VPP cannot express) or RuleLimitExceeded: fail closed, never a partial list.
    """
    cat = as_catalog(state)
    ep = cat.workload(endpoint)
    d = Direction(direction)
    if cache is not None:
        return _compile_cached(cache, cat, ep, d, rule_limit)
    # Endpoints with the same tiers, profiles and state get the same list: compiled once per
    # catalog (the list depends on nothing else of the endpoint, not on its addresses).
    same = (ep.active, ep.profile_ids, ep.tiers, d, rule_limit)
    lists = _LISTS.setdefault(cat, {})
    found = lists.get(same)
    if found is not None:
        return dataclasses.replace(found, endpoint=str(ep.key))
    with no_cycle_collection():
        lists[same] = compiled = _compile_endpoint(cat, ep, d, rule_limit)
    return compiled


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while compiling: a compile allocates millions of small
    tuples (boxes) and makes no reference cycles, so every collection it triggers walks all
    live objects for nothing (about 30% of the compile time measured by bench/compile.py; the
    classifier gate's analysis, which reads boxes the same way, uses it too). Only a speed
    measure: refcounting still frees everything, and the previous state returns (nested uses
    leave it off until the outermost ends)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_LISTS: weakref.WeakKeyDictionary[Catalog, dict[tuple[object, ...], CompiledList]] = weakref.WeakKeyDictionary()


def _compile_cached(cache: CompileCache, cat: Catalog, ep: WorkloadEndpoint, d: Direction,
                    rule_limit: int) -> CompiledList:
    view = cache.view(cat)
    key = view.list_key(ep, d, rule_limit, _config_key(cat, d))
    found = cache.get_list(key)
    if found is not None:
        return dataclasses.replace(found, endpoint=str(ep.key))
    families = {family: view.rule_boxes(family, rule_limit) for family in (4, 6)}
    deps: set[int] = view.list_deps(key)
    for boxes in families.values():
        boxes.deps = deps
    try:
        with no_cycle_collection():
            compiled = _compile_endpoint(cat, ep, d, rule_limit, families.__getitem__)
    finally:
        for boxes in families.values():
            boxes.deps = None
    cache.put_list(key, compiled, deps)
    return compiled


def _config_key(cat: Catalog, d: Direction) -> tuple[object, ...]:
    """The configuration a workload list reads (_encap_drops), as _encap_drops reads it."""
    if d is not Direction.EGRESS:
        return ()
    vxlan = cat.config_bool("AllowVXLANPacketsFromWorkloads")
    return (vxlan, None if vxlan else cat.vxlan_port, cat.config_bool("AllowIPIPPacketsFromWorkloads"))


def _compile_endpoint(cat: Catalog, ep: WorkloadEndpoint, d: Direction, rule_limit: int,
                      boxes: Callable[[int], RuleBoxes] | None = None) -> CompiledList:
    what = f"workload endpoint {ep.key} {d.value}"
    per_family = {}
    source = 0
    with _naming(what):
        for family in (4, 6):
            b = _Builder(boxes(family) if boxes is not None else shared_rule_boxes(cat, family, rule_limit))
            if not ep.active:
                b.catch_all("deny", "endpoint admin down")
            else:
                source = _profiles(b, cat, ep.profile_ids, d)
                source += _tiers(b, cat, ep.tiers, d, end_of_tier_drop=True)
                if d is Direction.EGRESS:
                    b.push(_encap_drops(cat))
            per_family[family] = finish(b.tail(len(b.rev)), family)
    rules, default = combine(per_family)
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
    with _naming(f"host endpoint {ep.id} {d.value}"), no_cycle_collection():
        for family in (4, 6):
            b = _Builder(shared_rule_boxes(cat, family, rule_limit))
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
            per_family[family] = finish(b.tail(len(b.rev)), family)
    rules, default = combine(per_family)
    _check_limit(rules, rule_limit, f"host endpoint {ep.id} {d.value}")
    return CompiledList(f"hep:{ep.id}", d.value, tuple(rules), default, source)


__all__ = [
    "DEFAULT_RULE_LIMIT",
    "CompileError",
    "CompiledList",
    "FirstMatch",
    "FlatRule",
    "RuleLimitExceeded",
    "compile_endpoint",
    "compile_host_endpoint",
    "first_match",
    "no_cycle_collection",
]
