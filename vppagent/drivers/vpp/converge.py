"""One convergence pass: what a state needs (desired.py) against what VPP holds (programmed.py),
one object kind after the other, each compared by its own pure plan and then written:

    source guards       guard/guards.py       prepare (each pod's guard before its egress ACL;
                                              sources it loses go now, new ones wait)
    classifier chains   classifier/adopt.py   adopt (after a read-back)
                        converge.py           an interface that must change chain, or whose gaps
                                              shrink, gets its exact list first (on another ACL
                                              index where it may hold L_U: that clears its
                                              reflect sessions): `_bind_exact_first`
                        classifier/chains.py  prepare (chains narrowed, members, attachments
                                              before ACLs widen)
    ACLs and bindings   acl/plan.py -> acl/apply.py (interfaces leaving a gate: another index)
    source guards       guard/guards.py       widen (new sources, where the lists were written)
    classifier chains   classifier/chains.py  finish (widen to the target where every user has its
                                              L_U; detach and delete after ACLs narrowed)
    source guards       guard/guards.py       finish (detach and delete after ACLs narrowed)
    routes              routes.py  plan_routes -> apply_routes

The order between kinds is the make-before-break rule of the classifier (gate.py: L_U AND chain
= L only while the chain is attached) and of the source guard (an egress ACL is bound only where
the pod's guard is attached and agrees with it; a pod whose guard cannot be made or updated gets
drop-everything egress). Each write keeps `Programmed` true, so a pass against a VPP
that already matches writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from vppagent.drivers.vpp.acl.apply import apply_plan
from vppagent.drivers.vpp.acl.lists import ListCompiler, lists_for_new_pod
from vppagent.drivers.vpp.acl.plan import Wanted, plan_all, plan_some
from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.types import DENY_ALL, AclContent
from vppagent.drivers.vpp.classifier.adopt import adopt
from vppagent.drivers.vpp.classifier.chains import ClassifierChains
from vppagent.drivers.vpp.desired import build_desired
from vppagent.drivers.vpp.failures import Failures, Owner
from vppagent.drivers.vpp.guard.guards import SourceGuards
from vppagent.drivers.vpp.programmed import Programmed
from vppagent.drivers.vpp.routes import apply_routes, made_routes, our_routes, plan_routes
from vppagent.policy.model import IPNetwork, WorkloadEndpoint
from vppagent.state.model import DataplaneState, Kind

log = logging.getLogger(__name__)


@dataclass
class PassResult:
    failed: Failures = field(default_factory=dict)
    unsupported_routes: int = 0
    made_routes: set[IPNetwork] = field(default_factory=set)  # next-hop routes ours to delete later


def converge(calls: VppCalls, programmed: Programmed, state: DataplaneState, compiler: ListCompiler,
             classifier: ClassifierChains, guards: SourceGuards, made: AbstractSet[IPNetwork], *,
             removing: bool = False) -> PassResult:
    """Make VPP hold what `state` needs. `made`: the next-hop routes earlier passes made;
    `removing`: the driver is being swapped out; only the routes to pod interfaces stay."""
    desired = build_desired(state, programmed, compiler)
    if removing:
        # Pod interfaces stay (isolated by a drop-everything ACL), and so do their host routes, as
        # their neighbours and unnumbered do. Deleted, a route would leave VPP only the neighbour's
        # adjacency entry for the prefix, which dumps exactly like the route but does not forward
        # (found on VPP 26.06: a swap back then saw its routes present and pods stayed cut off).
        pods = set(programmed.pod_interfaces().values())
        desired.routes = {p: t for p, t in programmed.routes.items() if t.sw_if_index in pods}
    result = PassResult(unsupported_routes=desired.unsupported_routes)
    failed = result.failed
    failed.update(desired.failed)
    for ifx in desired.pinned:  # a list that cannot be compiled keeps whatever it had
        if ifx in classifier.gate_of:
            desired.gates[ifx] = classifier.gate_of[ifx]
    _guard(guards, desired.guards, programmed, desired.wanted, desired.owners, failed)
    gates = {ifx: g for ifx, g in desired.gates.items() if ifx in programmed.interfaces}
    # Chains on before the ACLs widen to L_U. After a read-back the chains' output attachments
    # are inferred from the bound ACLs (classifier/chains.py): `settled` holds the interfaces whose
    # output ACL already has its desired content.
    settled = {ifx for ifx, (_, out) in desired.wanted.items()
               if out is not None and _bound_out(programmed, ifx) == out}
    candidates = (set(programmed.pod_interfaces().values()) | programmed.users_of_our_acls()) \
        & set(programmed.interfaces)
    refused: set[int] = set()
    try:
        adopt(classifier, gates, state, settled=settled, candidates=candidates)
        # Interfaces changing chain, and gated ones whose gaps shrink, get their exact list first, on
        # another ACL index where they may hold L_U (`clears`: VPP then drops their reflect sessions).
        clears = classifier.clears(gates)
        exact_bound = _bind_exact_first(calls, programmed, state, compiler,
                                        classifier.moves(gates).swaps | (clears & gates.keys()), clears,
                                        desired.owners, failed)
        refused = classifier.prepare(gates, state, settled=settled, exact_bound=exact_bound)
    except ApiRefused as exc:
        # Without its chain a gated interface must not get L_U: its ingress keeps what it had and
        # it fails (status "error", retried), the rest of the convergence goes on.
        log.warning("classifier chains not programmed: %s", exc)
        for ifx in gates:  # (one with no ACL of ours yet, e.g. restored after a VPP restart, drops)
            egress = desired.wanted.get(ifx, (None, None))[0]
            desired.wanted[ifx] = (egress, None if programmed.binding(ifx)[1] is not None else DENY_ALL)
            if ifx in desired.owners:
                failed.setdefault(desired.owners[ifx], str(exc))
    for ifx in refused:  # it stays on its chain, so its list stays too
        desired.wanted[ifx] = (desired.wanted.get(ifx, (None, None))[0], None)
        if ifx in desired.owners:
            failed.setdefault(desired.owners[ifx], f"interface {ifx}: gate change not made (its exact ingress "
                                                   "list could not be bound first)")
    # Those left to clear (leaving the gate, or whose exact list was not bound above) move to another ACL index now,
    # before `finish` lets their chain stop dropping.
    rebind = frozenset(classifier.clears(gates))
    for owner, reason in apply_plan(calls, programmed, desired.owners,
                                    plan_all(programmed, desired.wanted, rebind)).items():
        failed.setdefault(owner, reason)
    # Guards follow the egress ACLs as bound now: new sources once the list restricted to them is
    # bound (guards.prepare), and a guard goes only once its interface's egress ACL is what this
    # pass wanted (drop-everything for a pod with no endpoint): where VPP refused a bind, the old
    # list restricted to the pod's old sources is still there, and it needs its guard as it was.
    unsettled = _egress_unsettled(programmed, desired.wanted)
    for ifx, reason in guards.widen(set(desired.guards) - unsettled).items():
        if ifx in desired.owners:
            failed.setdefault(desired.owners[ifx], reason)
    settled = {ifx for ifx, (_, out) in desired.wanted.items()
               if out is not None and _bound_out(programmed, ifx) == out}
    try:
        classifier.finish(gates, state, settled)  # widened where the ACLs are L_U, off where they narrowed
    except ApiRefused as exc:  # a chain left attached or undeleted is retried on the next pass
        log.warning("classifier clean-up incomplete: %s", exc)
    for ifx, gate in classifier.behind(state).items():  # (narrower than its gate: drops what it may admit)
        if ifx in desired.owners and gates.get(ifx) == gate:
            failed.setdefault(desired.owners[ifx], f"interface {ifx}: classifier chain not yet at its gate")
    guards.finish(set(desired.guards) | desired.pinned | unsettled)
    route_plan = plan_routes(programmed.routes, desired.routes, our_routes(programmed, state, made))
    for owner, reason in apply_routes(calls, programmed, route_plan, desired.route_owners).items():
        failed.setdefault(owner, reason)
    result.made_routes = made_routes(programmed, desired.routes)
    return result


def _guard(guards: SourceGuards, wanted_guards: dict[int, WorkloadEndpoint], programmed: Programmed,
           wanted: dict[int, Wanted], owners: dict[int, Owner], failed: Failures) -> None:
    """Guards on before any egress ACL changes. An endpoint whose guard failed is failed and its
    egress drops everything until the guard is made: a guard updated in part beside a list
    restricted to the old sources (acl/lists.py) could let through what its policy denies."""
    present = {ifx: s for ifx, s in wanted_guards.items() if ifx in programmed.interfaces}
    names = {ifx: (programmed.interfaces[ifx].tag, programmed.interfaces[ifx].name) for ifx in present}
    for ifx, reason in guards.prepare(present, names).items():
        if ifx in owners:
            failed.setdefault(owners[ifx], reason)
        wanted[ifx] = (DENY_ALL, wanted.get(ifx, (None, None))[1])


def _bind_exact_first(calls: VppCalls, programmed: Programmed, state: DataplaneState, compiler: ListCompiler,
            movers: AbstractSet[int], clears: AbstractSet[int], owners: dict[int, Owner],
            failed: Failures) -> set[int]:
    """Interfaces that must change classifier chain, or whose gaps shrink, get their exact
    (ungated) ingress list first: VPP cannot swap an output classifier in one write, and L_U
    without its chain, or with another gate's, admits what the gate drops. Those in `clears` get it
    on another ACL index: VPP keeps an interface's reflect sessions on an in-place replace, and a
    non-member's session left by L_U would pass once the chain stops dropping its 5-tuple.
    Returns those whose exact list is bound now."""
    wanted: dict[int, Wanted] = {}
    for ifx in sorted(movers):
        owner = owners.get(ifx)
        if owner is not None and owner[0] is Kind.WORKLOAD_ENDPOINT:
            wanted[ifx] = (None, lists_for_new_pod(state, compiler, owner[1])[1])
    if not wanted:
        return set()
    plan = plan_some(programmed, wanted, frozenset(clears & wanted.keys()))
    for owner, reason in apply_plan(calls, programmed, owners, plan).items():
        failed.setdefault(owner, reason)
    return {ifx for ifx, (_, out) in wanted.items() if _bound_out(programmed, ifx) == out}


def _egress_unsettled(programmed: Programmed, wanted: dict[int, Wanted]) -> set[int]:
    """Interfaces whose egress (VPP input) ACL is not the one this pass wanted."""
    out = set()
    for ifx, (egress, _) in wanted.items():
        acl = programmed.binding(ifx)[0]
        if egress is not None and (acl is None or programmed.acls.get(acl) != egress):
            out.add(ifx)
    return out


def _bound_out(programmed: Programmed, sw_if_index: int) -> AclContent | None:
    acl = programmed.binding(sw_if_index)[1]
    return None if acl is None else programmed.acls.get(acl)
