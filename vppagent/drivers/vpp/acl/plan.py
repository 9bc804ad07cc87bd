"""Which ACLs to create, replace in place, bind and delete: the session rule as a pure function
(docs/vpp-driver.md, "The session rule", says why VPP's reflect sessions make it the rule).

Identical lists share one VPP ACL (content-addressed). The plan:
- All users of an ACL want the same new content: the ACL is replaced in place (one write,
  however many interfaces use it).
- Its users diverge: the class that wants the ACL's current content keeps it (no write), else the
  largest class keeps it and it is replaced in place; the others move to an ACL that already holds
  their content or to a new one.
- Lists converging is not a reason to move: two ACLs may hold equal content.
- Except the drop-everything ACL that pods get from CNI Add until Felix describes them: it is
  never rewritten for one of its users, they all move to the ACL holding their list.
- Make before break: new ACLs are created, interfaces that move are bound to ACLs whose content
  is already final, ACLs are replaced only after their departing users have left, interfaces
  that had no ACL of ours are bound after the replacements, and unused ACLs are deleted last.

- Interfaces to `rebind` move their ingress (VPP output) list to another ACL index whatever their
  content: VPP clears an interface's reflect sessions when the set of ACL indices bound to it
  changes and keeps them on an in-place replace (the classifier's gate changes need the clear:
  docs/vpp-driver.md, "Gate changes").

Slots are (sw_if_index, direction); a desired content of None pins the slot (keep what it has).
`plan_acls` is the rule on plain mappings; `plan_all` (a convergence) and `plan_some` (a CNI
Add or Del) apply it to what `Programmed` holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.types import DENY_ALL, AclContent
from vppagent.drivers.vpp.programmed import Binding, Programmed

# ACL reference in a plan: an existing index (>= 0) or a new ACL (-1, -2, ...).
AclRef = int
Wanted = tuple[AclContent | None, AclContent | None]  # None: keep as is


@dataclass
class AclPlan:
    creates: dict[AclRef, AclContent] = field(default_factory=dict)
    replaces: dict[int, AclContent] = field(default_factory=dict)
    early_binds: dict[int, tuple[AclRef | None, AclRef | None]] = field(default_factory=dict)
    late_binds: dict[int, tuple[AclRef | None, AclRef | None]] = field(default_factory=dict)
    deletes: list[int] = field(default_factory=list)

    def writes(self) -> int:
        return (len(self.creates) + len(self.replaces) + len(self.early_binds) + len(self.late_binds)
                + len(self.deletes))


def plan_acls(acls: Mapping[int, AclContent], bound: Mapping[int, Binding],
              wanted: Mapping[int, Wanted], unbind: frozenset[int] = frozenset(),
              rebind: frozenset[int] = frozenset()) -> AclPlan:
    """`acls`: our ACLs and their content; `bound`: what our interfaces have bound (only single ACLs
    of ours count; anything else is None); `wanted`: desired content per interface and direction;
    `unbind`: interfaces to leave without ACLs; `rebind`: interfaces whose ingress (VPP output)
    slot, unless pinned, moves off the ACL index it has (to clear their sessions). Interfaces in
    `bound` but in neither `wanted` nor `unbind` are pinned. Unused ACLs are deleted."""
    plan = AclPlan()
    for ifx in sorted(unbind):
        if bound.get(ifx, (None, None)) != (None, None):
            plan.late_binds[ifx] = (None, None)
    bound = {ifx: b for ifx, b in bound.items() if ifx not in unbind}
    slots: dict[tuple[int, int], AclContent | None] = {}
    for ifx in set(bound) | set(wanted):
        pair = wanted.get(ifx, (None, None))
        for direction in (0, 1):
            slots[(ifx, direction)] = pair[direction]

    def current(slot: tuple[int, int]) -> int | None:
        b = bound.get(slot[0])
        return None if b is None else b[slot[1]]

    users: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for slot in slots:
        index = current(slot)
        if index is not None and index in acls:
            users[index].append(slot)

    final: dict[AclRef, AclContent] = {}
    target: dict[tuple[int, int], AclRef] = {}
    movers: list[tuple[tuple[int, int], AclContent]] = []
    leaving: dict[tuple[int, int], int] = {}  # a rebound slot -> the index it must not get again
    # Step 1: per used ACL, who keeps it (and with what content), who moves.
    for index, slot_list in users.items():
        classes: dict[str, list[tuple[int, int]]] = defaultdict(list)
        content_of: dict[str, AclContent] = {}
        pinned = False
        for slot in slot_list:
            desired = slots[slot]
            if desired is not None and slot[1] == 1 and slot[0] in rebind:
                movers.append((slot, desired))
                leaving[slot] = index
                continue
            if desired is None:
                pinned = True
                desired = acls[index]
            classes[desired.digest].append(slot)
            content_of[desired.digest] = desired
        if pinned or acls[index].digest in classes:
            keep: str | None = acls[index].digest
        elif acls[index] == DENY_ALL or not classes:
            keep = None  # the placeholder of pods Felix has not described, or every user rebound: all move on
        else:
            keep = min(classes, key=lambda d: (-len(classes[d]), d))
        if keep is not None:
            final[index] = content_of[keep]
            if content_of[keep] != acls[index]:
                plan.replaces[index] = content_of[keep]
        for digest, members in classes.items():
            for slot in members:
                if digest == keep:
                    target[slot] = index
                else:
                    movers.append((slot, content_of[digest]))

    spares = sorted(i for i in acls if i not in users)
    next_new = -1

    def provide(content: AclContent, *, stable_only: bool, avoid: int | None = None) -> AclRef:
        """An ACL that will hold `content`: an existing one (not `avoid`), a spare, or a new one."""
        nonlocal next_new
        for ref, held in final.items():
            if held == content and ref != avoid and (not stable_only or ref not in plan.replaces):
                return ref
        for spare in spares:
            if acls[spare] == content:
                spares.remove(spare)
                final[spare] = content
                return spare
        if spares:  # rewriting an unused ACL saves deleting it and creating another
            spare = spares.pop(0)
            plan.replaces[spare] = content
            final[spare] = content
            return spare
        ref, next_new = next_new, next_new - 1
        plan.creates[ref] = content
        final[ref] = content
        return ref

    # Step 2: movers go to ACLs whose content is final before they bind (nothing is replaced
    # under them); the same ACL serves every mover wanting that content.
    moving_ifx = set()
    for slot, content in sorted(movers, key=lambda m: m[0]):
        target[slot] = provide(content, stable_only=True, avoid=leaving.get(slot))
        moving_ifx.add(slot[0])
    # Step 3: slots without an ACL of ours.
    for slot in sorted(slots):
        unbound = slots[slot]
        if slot in target or unbound is None:
            continue
        target[slot] = provide(unbound, stable_only=False)

    for ifx in sorted({s[0] for s in slots}):
        new = (target.get((ifx, 0), current((ifx, 0))), target.get((ifx, 1), current((ifx, 1))))
        if new == bound.get(ifx, (None, None)):
            continue
        (plan.early_binds if ifx in moving_ifx else plan.late_binds)[ifx] = new
    still_used = {ref for b in (*plan.early_binds.values(), *plan.late_binds.values()) for ref in b}
    still_used |= {i for ifx, b in bound.items() if ifx not in plan.early_binds
                   and ifx not in plan.late_binds for i in b if i is not None}
    plan.deletes = sorted(i for i in acls if i not in still_used)
    return plan


def plan_all(programmed: Programmed, wanted: Mapping[int, Wanted],
             rebind: frozenset[int] = frozenset()) -> AclPlan:
    """A convergence: `wanted` for the interfaces it names; pod interfaces it does not name are
    pinned; any other interface with an ACL of ours loses it."""
    users = programmed.users_of_our_acls()
    pods = set(programmed.pod_interfaces().values())
    interfaces = pods | set(wanted) | users
    bound = {ifx: programmed.binding(ifx) for ifx in interfaces}
    return plan_acls(programmed.acls, bound, wanted, frozenset(users - set(wanted) - pods), rebind)


def plan_some(programmed: Programmed, wanted: Mapping[int, Wanted],
              rebind: frozenset[int] = frozenset()) -> AclPlan:
    """Only the interfaces in `wanted` change (every other one keeps what it has); ACLs nobody
    uses any more go."""
    interfaces = set(programmed.pod_interfaces().values()) | programmed.users_of_our_acls() | set(wanted)
    return plan_acls(programmed.acls, {ifx: programmed.binding(ifx) for ifx in interfaces}, wanted,
                     rebind=rebind)
