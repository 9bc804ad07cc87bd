"""Adoption after a read-back (`ClassifierChains.reread`, read.py): which chains of ours each gate
takes over, and which interfaces a chain is known to be on. The rules and why they are safe:
docs/vpp-driver.md, "Restarts and adoption".

- Chains: per (gate, family), every chain read back holding exactly the gate's gaps and admits
  (in-place changes can leave two copies of one gate), else the one whose gaps hold the gate's
  with the fewest more (a chain caught between a gate change's prepare and finish), the closest in
  admits among those. The rest are stale: detached and deleted by `ClassifierChains.finish`.
- Interfaces: output attachments cannot be read, so they are inferred from the bound ACLs, only
  for an interface whose bound output ACL already holds its desired list and only where exactly
  one chain read back holds its gate's gaps. Any other interface is `unknown`: it moves like a
  chain swap, and no chain of its family widens until none is.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from vppagent.drivers.vpp.classifier.chain import Chain
from vppagent.drivers.vpp.classifier.chains import ClassifierChains
from vppagent.drivers.vpp.classifier.gaps import gap_sessions, gate_order
from vppagent.drivers.vpp.classifier.gate import Gate
from vppagent.drivers.vpp.classifier.read import FoundChain
from vppagent.state.model import DataplaneState

log = logging.getLogger(__name__)

Adopted = dict[tuple[Gate, int], list[Chain]]  # (gate, family) -> the chains it took over


def adopt(chains: ClassifierChains, gates: Mapping[int, Gate], state: DataplaneState, *,
          settled: AbstractSet[int], candidates: AbstractSet[int]) -> None:
    """Take over what `chains.reread` found (nothing when it found nothing). `settled`: interfaces
    whose bound output ACL already has its desired content; `candidates`: every interface a chain
    of ours may be attached to."""
    if chains.found is None:
        return
    found, chains.found = chains.found, None
    adopted, holding = _take_chains(chains, found, gates, state)
    chains.stale += found  # what no gate took
    _place_interfaces(chains, found, adopted, holding, gates, settled, candidates)
    if found:
        log.info("classifier: %d stale chain(s) of ours, to be detached and deleted", len(found))


def _take_chains(chains: ClassifierChains, found: list[FoundChain], gates: Mapping[int, Gate],
                 state: DataplaneState) -> tuple[Adopted, dict[tuple[Gate, int], int]]:
    """The chains each (gate, family) adopts, taken out of `found` into `chains.chains`; and per
    (gate, family) how many chains read back hold its gaps: an interface with that gate's L_U
    bound may be on any of them (a chain only narrows below its users' gate), so an attachment is
    inferred only where there is exactly one."""
    adopted: Adopted = defaultdict(list)
    holding: dict[tuple[Gate, int], int] = {}
    taken: set[int] = set()
    for gate in sorted(set(gates.values()), key=gate_order):
        for family in gate.families():
            gaps = gap_sessions(gate, family)
            holding[(gate, family)] = sum(1 for c in found if c.family == family and c.gaps >= gaps)
            matching = [c for c in found if c.family == family and c.gaps >= gaps
                        and not taken & set(c.tables)]  # (walks sharing tables: one is adopted)
            if not matching:
                continue
            wanted = chains.wanted(state, gate, family)
            same = [c for c in matching if c.gaps == gaps and c.sessions == wanted]  # copies: every one
            for best in same or [min(matching, key=lambda c: (len(c.gaps - gaps), len(c.sessions ^ wanted),
                                                                c.head))]:
                found.remove(best)
                taken.update(best.tables)
                chain = Chain(family, gate, list(best.tables), dict(best.masks), dict(best.admit_tables),
                              dict(best.gap_tables), set(best.sessions), set(best.gaps))
                chains.chains[chain.head] = chain
                adopted[(gate, family)].append(chain)
    return adopted, holding


def _place_interfaces(chains: ClassifierChains, stale: list[FoundChain], adopted: Adopted,
                      holding: dict[tuple[Gate, int], int], gates: Mapping[int, Gate],
                      settled: AbstractSet[int], candidates: AbstractSet[int]) -> None:
    """Per interface: the gate whose L_U its bound ACL holds (`acl_gate`: None when it may hold one,
    unknown which), the chain it is on where that is sure, else `unknown` in that family. A
    settled interface is on no stale chain: a detach naming each is sent (VPP refuses all but an
    attached one)."""
    for sw_if_index in sorted(candidates | set(gates)):
        wants = gates.get(sw_if_index)
        chains.acl_gate[sw_if_index] = wants if sw_if_index in settled else None
        if sw_if_index in settled and wants is None:
            del chains.acl_gate[sw_if_index]  # its exact list: no L_U
        for family in (4, 6):
            mine = adopted.get((wants, family), []) if wants is not None else []
            needs = wants is not None and family in wants.families()
            sure = wants is not None and len(mine) == 1 and holding.get((wants, family)) == 1
            if sw_if_index in settled and (sure or not needs):
                if needs:
                    chains.attached.setdefault(sw_if_index, {})[family] = mine[0].head  # L_U bound: chain on
                for left in stale:
                    if left.family == family and chains.detach_if_attached(sw_if_index, family, left.head):
                        log.info("classifier: stale chain %d was on interface %d", left.head, sw_if_index)
            else:  # on one of ours or none: found out once its list allows (`moves`, `finish`)
                chains.unknown.setdefault(sw_if_index, set()).add(family)
