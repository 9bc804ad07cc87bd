"""The agent's state store: Felix's desired state, what is programmed, and what may be programmed.

Lifecycle (one Felix stream at a time):
- A new stream starts an empty *pending* state. Messages fold into it until InSync; the driver is
  not touched, so a half-sent snapshot never reaches the dataplane.
- On InSync the pending state becomes *desired* and the store produces a resync: a diff of the
  *effective* state against what is *programmed* (or a full resync when nothing is known to be
  programmed, e.g. after an agent restart).
- After InSync every message updates *desired* directly and marks its (kind, key) dirty; `flush`
  diffs only the dirty keys (plus objects whose validity depends on them).

*Effective* = desired with bad objects held back (fail closed): an IP set with unparseable
members, a policy or profile that fails validation or references a missing/held IP set, and any
endpoint that references a missing or held-back policy/profile keep their programmed version (or
stay absent). Such endpoints report status "error" naming the cause. Nothing is programmed half.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.model import PolicyError, validate_policy, validate_profile
from vppagent.state.diff import StateDiff, diff_states
from vppagent.state.model import (
    ENDPOINT_KINDS,
    STAGED_KINDS,
    UNKNOWN_SET_DELTA,
    DataplaneState,
    Kind,
    endpoint_policy_keys,
    ip_set_ids,
)

# Kinds whose validity depends on other kinds: a change to an IP set can make a policy valid or
# invalid, a policy can make an endpoint valid or invalid.
_DEPENDENT_KINDS = (Kind.POLICY, Kind.PROFILE, *ENDPOINT_KINDS)


@dataclass
class Resolution:
    """The effective state and why objects were held back."""

    effective: DataplaneState
    held: dict[tuple[Kind, Any], str] = field(default_factory=dict)


# (kind, key) -> (the protobuf validated, what it saw of its IP sets, the error or None)
ValidationCache = dict[tuple[Kind, Any], tuple[Any, tuple[Any, ...], str | None]]


def _validated(cache: ValidationCache, kind: Kind, key: Any, pb: Any, rules: Iterable[felix.Rule],
               ipsets: dict[str, Any], check: Any) -> None:
    """Run `check` unless this very protobuf was checked against IP sets that looked the same.

    Validation parses every rule; doing it for every policy on every batch would cost more than
    the batch. What validation reads of an IP set is only: present, type, any invalid member.
    """
    refs = tuple(sorted(set().union(*(ip_set_ids(r) for r in rules))))
    seen = tuple((i, *((s.type, bool(s.invalid)) if (s := ipsets.get(i)) is not None else ())) for i in refs)
    hit = cache.get((kind, key))
    if hit is None or hit[0] is not pb or hit[1] != seen:
        try:
            check(key, pb, ipsets)
            hit = (pb, seen, None)
        except PolicyError as exc:
            hit = (pb, seen, str(exc))
        cache[(kind, key)] = hit
    if hit[2] is not None:
        raise PolicyError(hit[2])


def resolve(desired: DataplaneState, programmed: DataplaneState,
            cache: ValidationCache | None = None) -> Resolution:
    """Hold back invalid objects (keep their programmed version, or leave them out)."""
    eff = desired.copy()
    held: dict[tuple[Kind, Any], str] = {}
    cache = {} if cache is None else cache

    def hold(kind: Kind, key: Any, reason: str) -> None:
        held[(kind, key)] = reason
        old = programmed.tables[kind].get(key)
        if old is None:
            eff.tables[kind].pop(key, None)
        else:
            eff.tables[kind][key] = old

    for set_id, ipset in desired.ipsets.items():
        if UNKNOWN_SET_DELTA in ipset.invalid:
            hold(Kind.IPSET, set_id, f"IP set {set_id}: a delta arrived for a set Felix has not sent "
                                     "(held back until a full update of the set)")
        elif ipset.invalid:
            hold(Kind.IPSET, set_id, f"IP set {set_id}: invalid members {list(ipset.invalid)[:5]}")

    for pkey, policy in desired.policies.items():
        if pkey.kind in STAGED_KINDS:
            continue  # staged policies are never enforced, so never block anything
        try:
            _validated(cache, Kind.POLICY, pkey, policy, (*policy.inbound_rules, *policy.outbound_rules),
                       eff.ipsets, validate_policy)
            _check_held_sets(policy.inbound_rules, policy.outbound_rules, held, f"policy {pkey}")
        except PolicyError as exc:
            hold(Kind.POLICY, pkey, str(exc))

    for name, profile in desired.profiles.items():
        try:
            _validated(cache, Kind.PROFILE, name, profile, (*profile.inbound_rules, *profile.outbound_rules),
                       eff.ipsets, validate_profile)
            _check_held_sets(profile.inbound_rules, profile.outbound_rules, held, f"profile {name}")
        except PolicyError as exc:
            hold(Kind.PROFILE, name, str(exc))

    for kind in ENDPOINT_KINDS:
        for key, endpoint in desired.tables[kind].items():
            reason = _endpoint_problem(endpoint, desired, held)
            if reason is not None:
                hold(kind, key, reason)
    _keep_what_held_objects_use(programmed, eff, held)
    return Resolution(eff, held)


def _keep_what_held_objects_use(programmed: DataplaneState, eff: DataplaneState,
                                held: dict[tuple[Kind, Any], str]) -> None:
    """A held-back object keeps its programmed version, which may use objects Felix has removed
    since (an IP set, a policy): those stay programmed too, their removal held back, until nothing
    uses them. So the dataplane never refers to something gone (the kernel cannot even destroy
    an IP set a rule still uses), and the report says why they are still there."""
    todo = [ref for ref in held if eff.tables[ref[0]].get(ref[1]) is not None]
    while todo:
        kind, key = todo.pop()
        for used in _uses(kind, eff.tables[kind][key]):
            used_kind, used_key = used
            old = programmed.tables[used_kind].get(used_key)
            if used_key in eff.tables[used_kind] or old is None:
                continue
            eff.tables[used_kind][used_key] = old
            label = {Kind.IPSET: "IP set", Kind.POLICY: "policy", Kind.PROFILE: "profile"}[used_kind]
            held[used] = (f"{label} {used_key}: removed by Felix, but kept while held-back "
                          f"{kind.value} {key} still uses it")
            todo.append(used)


def _uses(kind: Kind, pb: Any) -> list[tuple[Kind, Any]]:
    """The IP sets, policies and profiles an object names."""
    if kind in (Kind.POLICY, Kind.PROFILE):
        return [(Kind.IPSET, i) for r in (*pb.inbound_rules, *pb.outbound_rules) for i in sorted(ip_set_ids(r))]
    if kind in ENDPOINT_KINDS:
        return [*((Kind.POLICY, k) for k in sorted(endpoint_policy_keys(pb))),
                *((Kind.PROFILE, n) for n in pb.profile_ids)]
    return []


def _check_held_sets(inbound: Iterable[felix.Rule], outbound: Iterable[felix.Rule],
                     held: dict[tuple[Kind, Any], str], what: str) -> None:
    for rule in (*inbound, *outbound):
        for set_id in ip_set_ids(rule):
            reason = held.get((Kind.IPSET, set_id))
            if reason is not None:
                raise PolicyError(f"{what} uses held-back {reason}")


def _endpoint_problem(endpoint: Any, desired: DataplaneState,
                      held: dict[tuple[Kind, Any], str]) -> str | None:
    for pkey in sorted(endpoint_policy_keys(endpoint)):
        if pkey.kind in STAGED_KINDS:
            continue
        if pkey not in desired.policies:
            return f"references missing policy {pkey}"
        if (Kind.POLICY, pkey) in held:
            return held[(Kind.POLICY, pkey)]
    for name in endpoint.profile_ids:
        if name not in desired.profiles:
            return f"references missing profile {name}"
        if (Kind.PROFILE, name) in held:
            return held[(Kind.PROFILE, name)]
    for (kind, _), reason in held.items():
        if kind == Kind.IPSET and _endpoint_uses_held_set(endpoint, desired, reason):
            return reason
    return None


def _endpoint_uses_held_set(endpoint: Any, desired: DataplaneState, reason: str) -> bool:
    # Policies using a held set were themselves checked against the effective (old) set, so the
    # endpoint can still be programmed consistently; it reports the set's problem all the same.
    for pkey in endpoint_policy_keys(endpoint):
        policy = desired.policies.get(pkey)
        if policy is not None and any(
            reason.startswith(f"IP set {s}:")
            for r in (*policy.inbound_rules, *policy.outbound_rules) for s in ip_set_ids(r)
        ):
            return True
    return False


class Store:
    """Pending → desired → effective → programmed, per DESIGN.md §1 and the module docstring."""

    def __init__(self) -> None:
        self.pending = DataplaneState()
        self.desired = DataplaneState()
        self.programmed: DataplaneState | None = None  # None: unknown (agent just started)
        self.in_sync = False
        self.held: dict[tuple[Kind, Any], str] = {}
        self._dirty: set[tuple[Kind, Any]] = set()
        self._resync_needed = False
        self._effective = DataplaneState()
        self._validation: ValidationCache = {}

    # -- input --------------------------------------------------------------------------------
    def new_stream(self) -> None:
        """A new Felix stream: collect its snapshot from scratch; keep serving the old state."""
        self.pending = DataplaneState()
        self.in_sync = False

    def apply(self, msg: felix.ToDataplane) -> bool:
        """Fold one message in. Returns False for a payload we do not know (caller logs it)."""
        if not self.in_sync:
            change = self.pending.apply(msg)
            if change.in_sync:
                self.desired = self.pending
                self.pending = DataplaneState()
                self.in_sync = True
                self._resync_needed = True
                self._dirty.clear()
            return not change.unknown
        change = self.desired.apply(msg)
        if change.kind is not None:
            self._dirty.add((change.kind, change.key))
        return not change.unknown

    @property
    def resync_pending(self) -> bool:
        """The next flush is a resync (after InSync of a new stream, or a forgotten dataplane)."""
        return self._resync_needed

    @property
    def has_work(self) -> bool:
        return self._resync_needed or bool(self._dirty)

    # -- output -------------------------------------------------------------------------------
    def prepare(self) -> tuple[StateDiff | None, DataplaneState]:
        """The change to hand the driver and the effective state after it.

        Returns (None, effective) when the driver must do a full resync (nothing is known to be
        programmed), else (diff, effective). Call `commit` once the driver has applied it.
        """
        if not self.in_sync:
            return StateDiff(), self._effective
        resolution = resolve(self.desired, self.programmed or DataplaneState(), self._validation)
        was_held, self.held = self.held, resolution.held
        effective = resolution.effective
        if self.programmed is None:
            return None, effective
        if self._resync_needed:
            return diff_states(self.programmed, effective), effective
        only = set(self._dirty) | set(self.held) | set(was_held)  # also what is no longer held back
        # Validity of dependents may have changed with what is dirty: re-diff them all. They
        # are few compared with IP set members, and the diff is by value, so unchanged ones
        # produce nothing.
        if any(kind in (Kind.IPSET, Kind.POLICY, Kind.PROFILE) for kind, _ in self._dirty):
            for kind in _DEPENDENT_KINDS:
                keys = effective.tables[kind].keys() | self.programmed.tables[kind].keys()
                only |= {(kind, k) for k in keys}
        return diff_states(self.programmed, effective, only), effective

    def commit(self, effective: DataplaneState, failed: Iterable[tuple[Kind, Any]] = ()) -> None:
        """The driver now holds `effective`, except the `failed` objects, which keep their old
        programmed value so that the next flush tries them again."""
        previous = self.programmed or DataplaneState()
        for kind, key in failed:
            old = previous.tables[kind].get(key)
            if old is None:
                effective.tables[kind].pop(key, None)
            else:
                effective.tables[kind][key] = old
            self._dirty.add((kind, key))
        self.programmed = effective
        self._effective = effective
        self._dirty = {(k, key) for k, key in failed}
        self._resync_needed = False

    @property
    def effective(self) -> DataplaneState:
        return self._effective
