"""Classifier chains for gated lists (gate.py): building them, moving them from gate to gate in
place, keeping their members current, attaching them, deleting stale ones. Adopting ours after a
restart is adopt.py's.

A chain is shared by the interfaces attached to it and converges to one gate (its target):

    admit tables (one per mask shape; hit -> permit)
      -> gap tables (one per mask shape; hit -> drop)
      -> miss -> permit

so its verdict is A or not D (A: its admit sessions, D: its gap sessions). An interface with
L_U(G) bound needs a chain at most G's (L_U(G) AND chain <= L(G)); docs/vpp-driver.md, "Large IP
sets", has the algebra. A chain's identity is its content, not a gate: when every interface on
it moves to gate G1, the chain itself moves (in place, no new tables unless a mask shape is new):

    prepare  add G1's gaps it lacks, delete admits G1 has not  -> below both old and new target
    (ACLs)   L_U1 bound where L_U0 was
    finish   add G1's admits, delete gaps G1 has not, drop tables left empty  -> exactly G1's

Every step narrows the chain (`_narrow`: it drops more) until all its users want its target and
have that gate's L_U bound (`acl_gate`), and only then widens it to that target (`_widen`). An
interface that must change chain (its chain stays with other users, or it joins another) cannot
do so atomically (VPP's output attach is a no-op while a table is attached), so `moves` names
those and converge.py binds their exact (ungated) list first; `prepare` refuses to move one whose
exact list is not bound. `clears` names the interfaces whose ACL must move to another index (VPP
then drops their reflect sessions) before their chain stops dropping part of their L_U's gaps: a
non-member's session left there would pass. With VPP's `reclassify-sessions` on (sessions.py) it
names none: every ACL change then makes the interface's older sessions stale, judged again by the
list bound at their next packet, so there is nothing to clear and a rebind would only cut flows.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.classifier.admits import AdmitSessions, Session, inside
from vppagent.drivers.vpp.classifier.chain import Chain, ChainWriter
from vppagent.drivers.vpp.classifier.gaps import gap_sessions, gaps_within, gate_order
from vppagent.drivers.vpp.classifier.gate import Gate
from vppagent.drivers.vpp.classifier.read import FoundChain, HeldTable, chains_in, read_chains
from vppagent.state.model import DataplaneState

log = logging.getLogger(__name__)


@dataclass
class Moves:
    """What a gate change does to chains and interfaces (pure: `ClassifierChains.moves`)."""

    retarget: dict[int, Gate] = field(default_factory=dict)  # chain head -> the gate it converges to now
    moves: dict[tuple[int, int], Gate] = field(default_factory=dict)  # (interface, family) -> gate, changing chain
    swaps: set[int] = field(default_factory=set)  # interfaces among them on a chain of ours now


class ClassifierChains:
    def __init__(self, calls: VppCalls) -> None:
        self.calls = calls
        self.chains: dict[int, Chain] = {}  # head -> chain
        self.attached: dict[int, dict[int, int]] = {}  # sw_if_index -> {family: head} (output)
        self.gate_of: dict[int, Gate] = {}  # sw_if_index -> the gate it is on
        # sw_if_index -> the gate whose L_U its bound output ACL holds (None: it may hold one, unknown
        # which; absent: none of ours). A chain widens to its target only when no user says otherwise.
        self.acl_gate: dict[int, Gate | None] = {}
        self.found: list[FoundChain] | None = None  # read back from VPP, adopted by the next `adopt`
        self.stale: list[Chain | FoundChain] = []  # ours, adopted by nobody: detached, deleted in finish
        self.writer = ChainWriter(calls)  # its `loose` tables are deleted in finish
        # after a read-back: interface -> families where a chain of ours may be on it, unknown which
        self.unknown: dict[int, set[int]] = {}
        self._admits = AdmitSessions()  # per (gated set, family): the members last seen, their sessions
        # heads whose narrowing this pass completed (or built this pass): only these widen in `finish`.
        # A refused write mid-narrowing (the pass goes on to `finish`) would otherwise widen a chain
        # still holding admits its target has not: old and new members at once.
        self._narrowed: set[int] = set()
        self._read_since_connect = False
        # Set by the driver on each connection (sessions.py `SessionRule.rejudged`): VPP judges every
        # session it holds again after an ACL change, so `clears` has nothing to clear.
        self.sessions_rejudged = False

    def connected(self) -> None:
        """A new connection to VPP: the next `reread` reads our chains back even if we know none."""
        self._read_since_connect = False

    def reread(self, tables: Callable[[], dict[int, HeldTable]] | None = None) -> None:
        """After a fresh read of VPP: keep what this driver knows while its tables are all there;
        otherwise (VPP restarted, or a new driver) read our chains back for `adopt.adopt`, from
        `tables` when given (the driver's read, shared with the source guards: readback.py).
        A driver that knows no chain and has read back since it connected reads nothing: every
        table VPP lists would be read (the source guards' too: three per pod) on every resync."""
        if self.chains:
            present = set(self.calls.classify_table_ids())
            if all(t in present for c in self.chains.values() for t in c.tables):
                return
            log.info("classifier tables gone (VPP restarted): reading back what is left")
        elif self._read_since_connect:
            return
        self.chains.clear()
        self.attached.clear()
        self.gate_of.clear()
        self.acl_gate.clear()
        self.unknown.clear()
        self.writer.loose = []
        self.stale = []  # indices of the VPP that went: in a new one they may be anyone's tables
        self.found = read_chains(self.calls) if tables is None else chains_in(tables())
        self._read_since_connect = True

    def _probe_off(self, sw_if_index: int, family: int) -> None:
        """Whichever chain of ours is on the interface in `family` comes off (a detach naming each
        head: VPP refuses all but the attached one): only where its list needs no chain now."""
        heads = {c.head for c in [*self.chains.values(), *self.stale] if c.family == family}
        for head in sorted(heads):
            self.detach_if_attached(sw_if_index, family, head)
        self.attached.get(sw_if_index, {}).pop(family, None)
        families = self.unknown.get(sw_if_index, set())
        families.discard(family)
        if not families:
            self.unknown.pop(sw_if_index, None)

    def detach_if_attached(self, sw_if_index: int, family: int, head: int) -> bool:
        """A detach naming `head`: VPP refuses it (NO_SUCH_TABLE) unless that table is attached."""
        return self.calls.output_table(sw_if_index, family, head, add=False, not_attached_ok=True,
                                       what=f"classifier {head} off interface {sw_if_index}")

    # -- what a gate change does -------------------------------------------------------------------
    def moves(self, gates: Mapping[int, Gate]) -> Moves:
        """Each chain of ours converges to the gate most of its users want (its own on a tie);
        interfaces wanting another gate change chain, and `swaps` are those on one of ours now."""
        out = Moves()
        for family in (4, 6):
            wants = {ifx: g for ifx, g in gates.items() if family in g.families()}
            for head, users in self._users(family).items():
                counts = Counter(wants[ifx] for ifx in users if ifx in wants)
                if counts:
                    own = self.chains[head].gate
                    out.retarget[head] = min(counts, key=lambda g: (-counts[g], g != own, gate_order(g)))
            for ifx, gate in wants.items():
                on = self.attached.get(ifx, {}).get(family)
                if on is None or out.retarget.get(on) != gate:
                    out.moves[(ifx, family)] = gate
                    if on is not None or family in self.unknown.get(ifx, ()):
                        out.swaps.add(ifx)
        return out

    def clears(self, gates: Mapping[int, Gate]) -> set[int]:
        """Interfaces whose ACL reflect sessions must be cleared (their ingress list moved to another
        ACL index) before their chain stops dropping part of their bound L_U's gaps. A non-member's
        packet there passes L_U and leaves a session although the chain drops it; kept, that
        5-tuple would pass once the chain no longer drops it. So: an interface leaving the gate,
        changing chain (between detach and attach no chain drops anything), or whose gaps shrink
        (the old gate's not inside the new one's, per family); one whose L_U is unknown (after a
        read-back) as long as any chain of ours is left in VPP. Gaps that only grow keep the
        in-place path: every session's 5-tuple stays dropped where it was.

        None while VPP judges sessions again (`sessions_rejudged`): the change of the interface's
        list (L_U0 to L_U1, or to its exact list) makes a non-member's session stale, and its next
        packet is judged by that list; where the list does not change, the session was made by the
        same L_U, and L_U AND the new chain is the new policy, which admits it."""
        if self.sessions_rejudged:
            return set()
        swaps = self.moves(gates).swaps
        chains_left = bool(self.chains or self.stale)  # (none: no interface has had one since its sessions went)
        out = set()
        for ifx, held in self.acl_gate.items():
            wants = gates.get(ifx)
            if held is None:
                if chains_left:
                    out.add(ifx)
            elif wants is None or ifx in swaps or not gaps_within(held, wants):
                out.add(ifx)
        return out

    def _users(self, family: int) -> dict[int, list[int]]:
        users: dict[int, list[int]] = defaultdict(list)
        for ifx, heads in sorted(self.attached.items()):
            if family in heads and heads[family] in self.chains:
                users[heads[family]].append(ifx)
        return users

    # -- before the ACLs change --------------------------------------------------------------------
    def prepare(self, gates: Mapping[int, Gate], state: DataplaneState, *, settled: AbstractSet[int] = frozenset(),
                exact_bound: AbstractSet[int] = frozenset()) -> set[int]:
        """Chains narrowed to below old and new target, member changes made where no gate changes,
        interfaces attached to the chain of their gate. `settled`: interfaces whose bound output ACL
        already is their desired list; `exact_bound`: interfaces whose exact list converge.py just
        bound. Returns the interfaces that must change chain but have no exact list bound (left as
        they are)."""
        self._bound(gates, settled)
        for ifx in exact_bound:
            self.acl_gate.pop(ifx, None)
        plan = self.moves(gates)
        for head, gate in plan.retarget.items():
            self.chains[head].gate = gate
        for chain in sorted(self.chains.values(), key=lambda c: c.head):
            if head_users := self._users(chain.family).get(chain.head):
                self._narrow(chain, state)
                # (a user given its exact list just now had its sessions cleared by that bind: its chain widens in
                # `finish`, after the ACLs, which gives VPP's asynchronous session cleaner the time)
                if self._users_at_target(chain, head_users, gates) and not exact_bound & set(head_users):
                    self._widen(chain, state)
        refused = set()
        for (ifx, family), gate in sorted(plan.moves.items(), key=lambda m: (m[0], gate_order(m[1]))):
            if ifx in plan.swaps and ifx not in exact_bound:
                refused.add(ifx)
                continue
            if family in self.unknown.get(ifx, ()):
                self._probe_off(ifx, family)  # (its exact list is bound)
            chain = self._chain_for(gate, family, state)
            current = self.attached.get(ifx, {})
            self._attach(ifx, {**current, family: chain.head})
        for ifx, gate in gates.items():
            if ifx not in refused and ifx in self.attached:
                self.gate_of[ifx] = gate
        return refused

    def _chain_for(self, gate: Gate, family: int, state: DataplaneState) -> Chain:
        for chain in sorted(self.chains.values(), key=lambda c: c.head):
            if chain.family == family and chain.gate == gate:
                if chain.head not in self._users(family):  # (not synced above: nobody known on it)
                    self._narrow(chain, state)
                    if not any(family in families for families in self.unknown.values()):
                        self._widen(chain, state)  # (else an interface not known may be on it: finish)
                return chain
        chain = self.writer.build(gate, family, self.wanted(state, gate, family), gap_sessions(gate, family))
        self.chains[chain.head] = chain
        self._narrowed.add(chain.head)
        return chain

    def _users_at_target(self, chain: Chain, users: Iterable[int], gates: Mapping[int, Gate]) -> bool:
        """Whether every user wants the chain's target and its bound output ACL is an L_U of that
        gate, or none of ours. (A user leaving the gate keeps its old list until the ACLs change:
        its chain must not take members the old list never had.)"""
        if any(chain.family in families for families in self.unknown.values()):
            return False  # an interface whose chain is not known may be on this one
        return all(gates.get(ifx) == chain.gate and self.acl_gate.get(ifx, chain.gate) == chain.gate
                   for ifx in users)

    # -- after the ACLs changed --------------------------------------------------------------------
    def finish(self, gates: Mapping[int, Gate], state: DataplaneState, settled: AbstractSet[int] = frozenset()) -> None:
        """`settled`: interfaces whose bound output ACL is now their desired list. Chains come off
        interfaces that no longer want them once their ACL holds no L_U, chains whose users all
        have their target's L_U widen to it, and chains nobody uses are deleted."""
        self._bound(gates, settled)
        self._probe_off_unknown(gates)
        self._detach_unwanted(gates)
        try:
            used = self._widen_ready(gates, state)
        finally:
            self._narrowed.clear()  # (the next pass narrows again first)
        self._retire_unused(used)
        self._delete_stale()

    def _probe_off_unknown(self, gates: Mapping[int, Gate]) -> None:
        """An interface not known to be on a chain, which needs none now, gets a detach naming each."""
        for ifx, unknown in list(self.unknown.items()):
            for family in sorted(unknown):
                if (ifx not in gates or family not in gates[ifx].families()) and not self._may_need(ifx, family):
                    self._probe_off(ifx, family)

    def _detach_unwanted(self, gates: Mapping[int, Gate]) -> None:
        """A chain comes off an interface whose gate no longer has its family, once its list holds no
        L_U that may need it."""
        for ifx, heads in list(self.attached.items()):
            families = gates[ifx].families() if ifx in gates else []
            keep = {f: h for f, h in heads.items() if f in families or self._may_need(ifx, f)}
            if keep != heads:
                self._attach(ifx, keep)
            if not keep:
                self.gate_of.pop(ifx, None)

    def _widen_ready(self, gates: Mapping[int, Gate], state: DataplaneState) -> set[int]:
        """Chains whose users all have their target's L_U widen to it. Returns the heads in use."""
        used = set()
        for family in (4, 6):
            for head, users in self._users(family).items():
                used.add(head)
                if head in self._narrowed and self._users_at_target(self.chains[head], users, gates):
                    self._widen(self.chains[head], state)
        return used

    def _retire_unused(self, used: AbstractSet[int]) -> None:
        """Chains nobody uses become stale before any delete: one whose delete VPP refuses stays
        there for the next pass. Their sets' member memos go with them."""
        self.stale += [self.chains.pop(h) for h in [h for h in self.chains if h not in used]]
        live = {(g, c.family) for c in self.chains.values() for g in c.gate.sets}
        self._admits.keep_only(live)

    def _delete_stale(self) -> None:
        """Stale chains are deleted table by table (a table leaves the books once VPP deleted it),
        except in a family where an interface is unknown (the chain may be on it), and tables made
        but never linked."""
        unknown = {f for families in self.unknown.values() for f in families}
        kept = {t for c in self.chains.values() for t in c.tables}  # (a stale walk may share a live tail)
        for chain in [c for c in self.stale if c.family not in unknown]:
            while chain.tables:
                table = chain.tables[0]
                if table not in kept:
                    self.calls.classify_table_del(table)
                    kept.add(table)  # (another stale walk may share it: deleted once)
                chain.tables.pop(0)
            self.stale.remove(chain)
        while self.writer.loose:
            self.calls.classify_table_del(self.writer.loose[0])
            self.writer.loose.pop(0)

    def _bound(self, gates: Mapping[int, Gate], settled: AbstractSet[int]) -> None:
        """`settled` interfaces have their desired list bound: L_U of their gate, or exact."""
        for ifx in settled:
            if ifx in gates:
                self.acl_gate[ifx] = gates[ifx]
            else:
                self.acl_gate.pop(ifx, None)

    def _may_need(self, sw_if_index: int, family: int) -> bool:
        """Whether the interface's bound output ACL may be an L_U that needs a chain in `family`."""
        if sw_if_index not in self.acl_gate:
            return False
        gate = self.acl_gate[sw_if_index]
        return gate is None or family in gate.families()

    def behind(self, state: DataplaneState) -> dict[int, Gate]:
        """Interfaces whose chain does not hold its target's sessions (a refused write, or a user
        whose ACL has not reached L_U of the target yet), with that target."""
        out = {}
        for family in (4, 6):
            for head, users in self._users(family).items():
                chain = self.chains[head]
                if (chain.gaps != gap_sessions(chain.gate, family)
                        or chain.sessions != self.wanted(state, chain.gate, family)):
                    out.update(dict.fromkeys(users, chain.gate))
        return out

    def interface_gone(self, sw_if_index: int) -> None:
        """Called before a pod interface is deleted: its chains come off first. VPP keeps an
        interface's classifier record when the interface goes, and the next interface given that
        index inherits it with ip4-outacl off, where an add then does nothing (26.06;
        docs/vpp-driver.md, "Source guard").
        A refused detach is raised with the books kept as VPP holds them: the interface must stay
        (the CNI Del fails and is retried) rather than pass its record on to the next pod."""
        self._attach(sw_if_index, {})
        self.gate_of.pop(sw_if_index, None)
        self.acl_gate.pop(sw_if_index, None)
        self.unknown.pop(sw_if_index, None)

    # -- content -----------------------------------------------------------------------------------
    def wanted(self, state: DataplaneState, gate: Gate, family: int) -> set[Session]:
        """The admit sessions for the current members (admits.py: a member change costs what the
        blocks it touches need)."""
        return self._admits.wanted(state, gate, family)

    def _narrow(self, chain: Chain, state: DataplaneState) -> None:
        """The target's gaps it lacks added, admits the target has not deleted: below what it was
        and below its target at every write. Admits are blocks of members (admits.py), so where a
        block splits (a member left it) its parts come first, inside the block it still holds, and
        where blocks merge the old ones stay, inside the new one, until `_widen` adds it: no
        member is unadmitted on the way."""
        wanted = self.wanted(state, chain.gate, chain.family)
        self.writer.add(chain, gap_sessions(chain.gate, chain.family) - chain.gaps, gap=True)
        self.writer.add(chain, inside(wanted - chain.sessions, chain.sessions), gap=False)
        held = chain.sessions - wanted
        self.writer.delete(chain, held - inside(held, wanted), gap=False)
        self._narrowed.add(chain.head)

    def _widen(self, chain: Chain, state: DataplaneState) -> None:
        """The rest of the way to its target: admits added, then those inside them deleted, gaps
        deleted, tables left empty unlinked and deleted."""
        wanted = self.wanted(state, chain.gate, chain.family)
        self.writer.add(chain, wanted - chain.sessions, gap=False)
        self.writer.delete(chain, chain.sessions - wanted, gap=False)
        self.writer.delete(chain, chain.gaps - gap_sessions(chain.gate, chain.family), gap=True)
        self.writer.drop_empty_tables(chain)

    def _attach(self, sw_if_index: int, heads: dict[int, int]) -> None:
        """One family per request: VPP's add stops at the first family already attached (answering
        0), and a delete must name the attached table (in_out_acl.c)."""
        current = self.attached.setdefault(sw_if_index, {})
        for family in (4, 6):
            old, new = current.get(family), heads.get(family)
            if old == new:
                continue
            if old is not None:
                self._set_output(sw_if_index, family, old, add=False)
                del current[family]
            if new is not None:
                self._set_output(sw_if_index, family, new, add=True)
                current[family] = new
        if not current:
            del self.attached[sw_if_index]

    def _set_output(self, sw_if_index: int, family: int, table: int, *, add: bool) -> None:
        self.calls.output_table(sw_if_index, family, table, add=add,
                                what=f"classifier {'on' if add else 'off'} interface {sw_if_index}")
