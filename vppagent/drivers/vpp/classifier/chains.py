"""Classifier chains for gated lists (gate.py): building them, moving them from gate to gate in
place, keeping their members current, attaching them, adopting ours after a restart, deleting
stale ones.

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

Every step only narrows the chain until all its users want its target and have that gate's L_U
bound (`acl_gate`), and only then widens it to that target. An interface that must change chain
(its chain stays with other users, or it joins another) cannot do so atomically (VPP's output
attach is a no-op while a table is attached), so `moves` names those and converge.py binds their
exact (ungated) list first; `prepare` refuses to move one that is not narrowed. `clears` names the
interfaces whose ACL must move to another index (VPP then drops their reflect sessions) before
their chain stops dropping part of their L_U's gaps: a non-member's session left there would pass.

After a read-back (read.py) `adopt` takes, per (gate, family), the chains of ours holding exactly
the gate's content, else the one whose gaps hold the gate's with the fewest more, and infers output
attachments from the bound ACLs only where exactly one chain read back holds the gate's gaps; an
interface it cannot place is `unknown` and moves like a swap, and no chain of its family widens;
the rules and why they are safe: docs/vpp-driver.md, "Restarts and adoption".

(Over 400 lines: building, moving, adopting and attaching all change the same records, the chains
and who is on them, and each needs the others' invariants; split, they would share private state.)
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.api.types import SessionWrite
from vppagent.drivers.vpp.classifier.admits import AdmitSessions, Session, inside
from vppagent.drivers.vpp.classifier.gate import GapEntry, Gate
from vppagent.drivers.vpp.classifier.layout import DROP, OUR_OPAQUE, PERMIT, mask_net, match_bytes
from vppagent.drivers.vpp.classifier.read import FoundChain, read_chains
from vppagent.policy.model import IPNetwork
from vppagent.state.model import DataplaneState

log = logging.getLogger(__name__)


@dataclass
class Chain:
    family: int
    gate: Gate  # the gate it converges to
    tables: list[int]  # head first: admit tables, then gap tables
    masks: dict[int, bytes]  # table -> mask
    admit_tables: dict[bytes, int]  # mask -> table
    gap_tables: dict[bytes, int]
    sessions: set[Session] = field(default_factory=set)  # admit sessions held
    gaps: set[Session] = field(default_factory=set)  # gap sessions held

    @property
    def head(self) -> int:
        return self.tables[0]


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
        self.loose: list[int] = []  # tables made but in no chain yet (a refused write): deleted in finish
        # after a read-back: interface -> families where a chain of ours may be on it, unknown which
        self.unknown: dict[int, set[int]] = {}
        self._admits = AdmitSessions()  # per (gated set, family): the members last seen, their sessions
        self._read_since_connect = False

    def connected(self) -> None:
        """A new connection to VPP: the next `reread` reads our chains back even if we know none."""
        self._read_since_connect = False

    def reread(self) -> None:
        """After a fresh read of VPP: keep what this driver knows while its tables are all there;
        otherwise (VPP restarted, or a new driver) read our chains back for `adopt`.
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
        self.loose = []
        self.stale = []  # indices of the VPP that went: in a new one they may be anyone's tables
        self.found = read_chains(self.calls)
        self._read_since_connect = True

    # -- after a read-back -------------------------------------------------------------------------
    def adopt(self, gates: Mapping[int, Gate], state: DataplaneState, *, settled: AbstractSet[int],
              candidates: AbstractSet[int]) -> None:
        """Take over what `reread` found. `settled`: interfaces whose bound output ACL already has
        its desired content; `candidates`: every interface a chain of ours may be attached to."""
        if self.found is None:
            return
        found, self.found = self.found, None
        adopted: dict[tuple[Gate, int], list[Chain]] = defaultdict(list)
        # (gate, family) -> how many chains read back hold its gaps: an interface with that gate's L_U
        # bound may be on any of them (a chain only narrows below its users' gate), so an attachment
        # is inferred only where there is exactly one.
        holding: dict[tuple[Gate, int], int] = {}
        taken: set[int] = set()
        for gate in sorted(set(gates.values()), key=_gate_order):
            for family in gate.families():
                gaps = gap_sessions(gate, family)
                holding[(gate, family)] = sum(1 for c in found if c.family == family and c.gaps >= gaps)
                matching = [c for c in found if c.family == family and c.gaps >= gaps
                            and not taken & set(c.tables)]  # (walks sharing tables: one is adopted)
                if not matching:
                    continue
                wanted = self._wanted(state, gate, family)
                same = [c for c in matching if c.gaps == gaps and c.sessions == wanted]  # copies: every one
                for best in same or [min(matching, key=lambda c: (len(c.gaps - gaps), len(c.sessions ^ wanted),
                                                                    c.head))]:
                    found.remove(best)
                    taken.update(best.tables)
                    chain = Chain(family, gate, list(best.tables), dict(best.masks), dict(best.admit_tables),
                                  dict(best.gap_tables), set(best.sessions), set(best.gaps))
                    self.chains[chain.head] = chain
                    adopted[(gate, family)].append(chain)
        self.stale += found
        for sw_if_index in sorted(candidates | set(gates)):
            wants = gates.get(sw_if_index)
            self.acl_gate[sw_if_index] = wants if sw_if_index in settled else None
            if sw_if_index in settled and wants is None:
                del self.acl_gate[sw_if_index]  # its exact list: no L_U
            for family in (4, 6):
                mine = adopted.get((wants, family), []) if wants is not None else []
                needs = wants is not None and family in wants.families()
                sure = wants is not None and len(mine) == 1 and holding.get((wants, family)) == 1
                if sw_if_index in settled and (sure or not needs):
                    if needs:
                        self.attached.setdefault(sw_if_index, {})[family] = mine[0].head  # L_U bound: chain on
                    for left in found:  # a stale one is on no interface with its desired list: probed off
                        if left.family == family and self._detach_if_attached(sw_if_index, family, left.head):
                            log.info("classifier: stale chain %d was on interface %d", left.head, sw_if_index)
                else:  # on one of ours or none: found out once its list allows (`moves`, `finish`)
                    self.unknown.setdefault(sw_if_index, set()).add(family)
        if found:
            log.info("classifier: %d stale chain(s) of ours, to be detached and deleted", len(found))

    def _probe_off(self, sw_if_index: int, family: int) -> None:
        """Whichever chain of ours is on the interface in `family` comes off (a detach naming each
        head: VPP refuses all but the attached one): only where its list needs no chain now."""
        heads = {c.head for c in [*self.chains.values(), *self.stale] if c.family == family}
        for head in sorted(heads):
            self._detach_if_attached(sw_if_index, family, head)
        self.attached.get(sw_if_index, {}).pop(family, None)
        families = self.unknown.get(sw_if_index, set())
        families.discard(family)
        if not families:
            self.unknown.pop(sw_if_index, None)

    def _detach_if_attached(self, sw_if_index: int, family: int, head: int) -> bool:
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
                    out.retarget[head] = min(counts, key=lambda g: (-counts[g], g != own, _gate_order(g)))
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
        in-place path: every session's 5-tuple stays dropped where it was."""
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
                narrowed: AbstractSet[int] = frozenset()) -> set[int]:
        """Chains narrowed to below old and new target, member changes made where no gate changes,
        interfaces attached to the chain of their gate. `settled`: interfaces whose bound output ACL
        already is their desired list; `narrowed`: interfaces whose exact list converge.py just
        bound. Returns the interfaces that must change chain but were not narrowed (left as they are)."""
        self._bound(gates, settled)
        for ifx in narrowed:
            self.acl_gate.pop(ifx, None)
        plan = self.moves(gates)
        for head, gate in plan.retarget.items():
            self.chains[head].gate = gate
        for chain in sorted(self.chains.values(), key=lambda c: c.head):
            if head_users := self._users(chain.family).get(chain.head):
                self._narrow(chain, state)
                # (a user narrowed just now had its sessions cleared by that bind: its chain widens in
                # `finish`, after the ACLs, which gives VPP's asynchronous session cleaner the time)
                if self._users_at_target(chain, head_users, gates) and not narrowed & set(head_users):
                    self._widen(chain, state)
        refused = set()
        for (ifx, family), gate in sorted(plan.moves.items(), key=lambda m: (m[0], _gate_order(m[1]))):
            if ifx in plan.swaps and ifx not in narrowed:
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
        return self._build(gate, family, state)

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
        for ifx, unknown in list(self.unknown.items()):
            for family in sorted(unknown):
                if (ifx not in gates or family not in gates[ifx].families()) and not self._may_need(ifx, family):
                    self._probe_off(ifx, family)
        for ifx, heads in list(self.attached.items()):
            families = gates[ifx].families() if ifx in gates else []
            keep = {f: h for f, h in heads.items() if f in families or self._may_need(ifx, f)}
            if keep != heads:
                self._attach(ifx, keep)
            if not keep:
                self.gate_of.pop(ifx, None)
        used = set()
        for family in (4, 6):
            for head, users in self._users(family).items():
                used.add(head)
                if self._users_at_target(self.chains[head], users, gates):
                    self._widen(self.chains[head], state)
        # Unused chains become stale before any delete: a refused one stays in `stale` for the next pass.
        self.stale += [self.chains.pop(h) for h in [h for h in self.chains if h not in used]]
        live = {(g, c.family) for c in self.chains.values() for g in c.gate.sets}
        self._admits.keep_only(live)
        unknown = {f for families in self.unknown.values() for f in families}
        kept = {t for c in self.chains.values() for t in c.tables}  # (a stale walk may share a live tail)
        for chain in [c for c in self.stale if c.family not in unknown]:  # (else it may be on an interface)
            while chain.tables:
                table = chain.tables[0]
                if table not in kept:
                    self.calls.classify_table_del(table)
                    kept.add(table)  # (another stale walk may share it: deleted once)
                chain.tables.pop(0)
            self.stale.remove(chain)
        while self.loose:
            self.calls.classify_table_del(self.loose[0])
            self.loose.pop(0)

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
                        or chain.sessions != self._wanted(state, chain.gate, family)):
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
    def _wanted(self, state: DataplaneState, gate: Gate, family: int) -> set[Session]:
        """The admit sessions for the current members (admits.py: a member change costs what the
        blocks it touches need)."""
        return self._admits.wanted(state, gate, family)

    def _narrow(self, chain: Chain, state: DataplaneState) -> None:
        """The target's gaps it lacks added, admits the target has not deleted: below what it was
        and below its target at every write. Admits are blocks of members (admits.py), so where a
        block splits (a member left it) its parts come first, inside the block it still holds, and
        where blocks merge the old ones stay, inside the new one, until `_widen` adds it: no
        member is unadmitted on the way."""
        wanted = self._wanted(state, chain.gate, chain.family)
        self._add(chain, gap_sessions(chain.gate, chain.family) - chain.gaps, gap=True)
        self._add(chain, inside(wanted - chain.sessions, chain.sessions), gap=False)
        held = chain.sessions - wanted
        self._delete(chain, held - inside(held, wanted), gap=False)

    def _widen(self, chain: Chain, state: DataplaneState) -> None:
        """The rest of the way to its target: admits added, then those inside them deleted, gaps
        deleted, tables left empty unlinked and deleted."""
        wanted = self._wanted(state, chain.gate, chain.family)
        self._add(chain, wanted - chain.sessions, gap=False)
        self._delete(chain, chain.sessions - wanted, gap=False)
        self._delete(chain, chain.gaps - gap_sessions(chain.gate, chain.family), gap=True)
        self._drop_empty_tables(chain)

    # -- tables and sessions -----------------------------------------------------------------------
    def _build(self, gate: Gate, family: int, state: DataplaneState) -> Chain:
        """A new chain with its target's content, back to front (each table knows its next)."""
        admits, gaps = self._wanted(state, gate, family), gap_sessions(gate, family)
        by_admit, by_gap = _by_mask(admits), _by_mask(gaps)
        chain = Chain(family, gate, [], {}, {}, {})
        following = NO_INDEX
        layers = [(m, by_gap[m], True) for m in sorted(by_gap, reverse=True)]
        layers += [(m, by_admit.get(m, []), False) for m in (sorted(by_admit) or [_first_mask(gate, family)])]
        for mask, matches, gap in layers:
            table = self._new_table(mask, following, len(matches) if gap else max(1024, 2 * len(matches)))
            self._sessions([(table, match) for match in matches], DROP if gap else PERMIT)
            (chain.gap_tables if gap else chain.admit_tables)[mask] = table
            (chain.gaps if gap else chain.sessions).update((mask, m) for m in matches)
            chain.tables.insert(0, table)
            chain.masks[table] = mask
            following = table
        self.loose = [t for t in self.loose if t not in chain.masks]
        self.chains[chain.head] = chain
        return chain

    def _new_table(self, mask: bytes, following: int, entries: int) -> int:
        table = self.calls.classify_table_add(mask=mask, next_table=following, miss_next=PERMIT,
                                              nbuckets=max(2, 1 << max(entries - 1, 1).bit_length()),
                                              memory_size=max(1 << 20, entries * 64 * 16))
        self.loose.append(table)  # until it is linked into a chain
        return table

    def _repoint(self, chain: Chain, table: int, following: int) -> None:
        """VPP's classify_add_del_table with is_add and an existing index changes only its next table."""
        self.calls.classify_table_add(mask=chain.masks[table], next_table=following, miss_next=PERMIT, nbuckets=2,
                                      memory_size=1 << 20, index=table, what=f"classifier table {table} re-pointed")

    def _sessions(self, items: list[tuple[int, bytes]], hit: int, *, add: bool = True,
                  done: Callable[[int, bytes], None] | None = None) -> None:
        """One ordered step: the sessions (table, match) written in one pipeline, replies awaited;
        `done` is told of each one VPP did; then the first refusal, if any, is raised."""
        if not items:
            return
        outcomes = self.calls.batches.classify_sessions_write([SessionWrite(t, m, hit, OUR_OPAQUE, add)
                                                               for t, m in items])
        for (table, match), outcome in zip(items, outcomes, strict=True):
            if outcome is None and done is not None:
                done(table, match)
        refused = next((o for o in outcomes if o is not None), None)
        if refused is not None:
            raise refused

    def _add(self, chain: Chain, sessions: set[Session], *, gap: bool) -> None:
        """Sessions added; a new mask gets a table, filled, then linked: a gap table at the end of
        the chain, an admit table right behind the head (the head stays: it is attached)."""
        tables, held, hit = _part(chain, gap)
        by_mask = _by_mask(sessions)
        masks = {table: mask for mask, table in tables.items()}
        self._sessions([(tables[mask], match) for mask, matches in sorted(by_mask.items()) if mask in tables
                        for match in matches], hit, done=lambda table, match: held.add((masks[table], match)))
        for mask, matches in sorted(by_mask.items()):
            if mask in tables:
                continue
            after = chain.tables[-1] if gap else chain.head
            following = NO_INDEX if gap else (chain.tables[1] if len(chain.tables) > 1 else NO_INDEX)
            table = self._new_table(mask, following, len(matches) if gap else max(1024, 2 * len(matches)))
            self._sessions([(table, match) for match in matches], hit)
            chain.masks[table] = mask
            self._repoint(chain, after, table)
            self.loose.remove(table)
            chain.tables.insert(len(chain.tables) if gap else 1, table)
            tables[mask] = table
            held.update((mask, m) for m in matches)

    def _delete(self, chain: Chain, sessions: set[Session], *, gap: bool) -> None:
        tables, held, hit = _part(chain, gap)
        masks = {table: mask for mask, table in tables.items()}
        self._sessions([(tables[mask], match) for mask, match in sorted(sessions)], hit, add=False,
                       done=lambda table, match: held.discard((masks[table], match)))

    def _drop_empty_tables(self, chain: Chain) -> None:
        """Tables with no session left (but the head) come out of the chain: each costs a lookup
        per packet, and read.py tells gap tables from admit tables by their sessions."""
        used = {mask for mask, _ in chain.sessions} | {mask for mask, _ in chain.gaps}
        for table in [t for t in chain.tables[1:] if chain.masks[t] not in used]:
            at = chain.tables.index(table)
            following = chain.tables[at + 1] if at + 1 < len(chain.tables) else NO_INDEX
            self._repoint(chain, chain.tables[at - 1], following)
            chain.tables.remove(table)
            mask = chain.masks.pop(table)
            for tables in (chain.admit_tables, chain.gap_tables):
                if tables.get(mask) == table:
                    del tables[mask]
            self.loose.append(table)
            self.calls.classify_table_del(table)
            self.loose.remove(table)

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


def _part(chain: Chain, gap: bool) -> tuple[dict[bytes, int], set[Session], int]:
    """The gap or the admit part of a chain: its tables by mask, its sessions, their hit action."""
    return (chain.gap_tables, chain.gaps, DROP) if gap else (chain.admit_tables, chain.sessions, PERMIT)


def gap_sessions(gate: Gate, family: int) -> set[Session]:
    """The gap sessions a chain converging to (gate, family) holds: (mask, match) per gap entry."""
    out: set[Session] = set()
    for gap in gate.gaps:
        if gap.family == family:
            out.add((_gap_mask(family, gap), match_bytes(family, proto=gap.proto, src=gap.src, dst=gap.dst,
                                                         dport=gap.dport)))
    return out


def gaps_within(old: Gate, new: Gate) -> bool:
    """Whether every gap entry of `old` lies inside one of `new`'s (same family and protocol, source
    and destination inside, port block inside): then `new` drops wherever `old` did. Gaps cut
    differently may cover each other without this; it then answers no, which only costs a rebind."""
    if set(old.gaps) <= set(new.gaps):
        return True
    return all(any(_entry_within(a, b) for b in new.gaps) for a in old.gaps)


def _entry_within(a: GapEntry, b: GapEntry) -> bool:
    return (a.family == b.family and a.proto == b.proto and _net_within(a.src, b.src) and _net_within(a.dst, b.dst)
            and a.dport_mask & b.dport_mask == b.dport_mask and a.dport & b.dport_mask == b.dport)


def _net_within(a: IPNetwork, b: IPNetwork) -> bool:
    return a.version == b.version and a.prefixlen >= b.prefixlen and a.supernet(new_prefix=b.prefixlen) == b


def _gap_mask(family: int, gap: GapEntry) -> bytes:
    _, src_len, dst_len, port_mask = gap.shape
    return match_bytes(family, proto=1, src=mask_net(family, src_len), dst=mask_net(family, dst_len),
                       dport=port_mask, full=True)


def _by_mask(sessions: Iterable[Session]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = defaultdict(list)
    for mask, match in sorted(sessions):
        out[mask].append(match)
    return out


def _first_mask(gate: Gate, family: int) -> bytes:
    """The admit table a chain starts with when no member needs one yet (the head must exist
    before the chain is attached): a host member's shape in this family."""
    host = 32 if family == 4 else 128
    for gated in gate.sets:
        if family in gated.everywhere:
            return match_bytes(family, src=mask_net(family, host), full=True)
        for e in gated.admits:
            if e.family == family:
                return match_bytes(family, proto=1, src=mask_net(family, max(host, e.src.prefixlen)),
                                   dst=mask_net(family, e.dst.prefixlen), dport=e.dport_mask, full=True)
    return match_bytes(family, src=mask_net(family, host), full=True)


def _gate_order(gate: Gate) -> tuple[str, str]:
    return (repr(gate.set_ids), repr((gate.sets, gate.gaps)))
