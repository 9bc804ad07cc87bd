"""A gate's drop region as classifier sessions, and gates compared: the facts about gates that
the chains (chains.py) and their adoption after a restart (adopt.py) share.

- `gap_sessions`: the (mask, match) gap sessions a chain converging to a gate holds;
- `gaps_within`: whether one gate drops wherever another does (a gate change that shrinks the
  gaps must clear reflect sessions first: docs/vpp-driver.md, "Reflect sessions of dropped flows");
- `gate_order`: a total order on gates, from their fields, stable across runs (ties between the
  gates a chain's users want are broken by it, and adoption goes through gates in it).
"""

from __future__ import annotations

from vppagent.drivers.vpp.classifier.admits import Session
from vppagent.drivers.vpp.classifier.gate import GapEntry, Gate
from vppagent.drivers.vpp.classifier.layout import mask_net, match_bytes
from vppagent.drivers.vpp.classifier.regions import Basis
from vppagent.policy.model import IPNetwork

EntryKey = tuple[int, int, int, int, int, int, int, int]
SetKey = tuple[str, tuple[EntryKey, ...], tuple[int, ...], tuple[tuple[int, Basis], ...]]
GateKey = tuple[tuple[str, ...], tuple[EntryKey, ...], tuple[SetKey, ...]]


def gap_sessions(gate: Gate, family: int) -> set[Session]:
    """The gap sessions a chain converging to (gate, family) holds: (mask, match) per gap entry."""
    out: set[Session] = set()
    for gap in gate.gaps:
        if gap.family == family:
            out.add((_gap_mask(family, gap), match_bytes(family, proto=gap.proto, src=gap.src, dst=gap.dst,
                                                         dport=gap.dport)))
    return out


def _gap_mask(family: int, gap: GapEntry) -> bytes:
    _, src_len, dst_len, port_mask = gap.shape
    return match_bytes(family, proto=1, src=mask_net(family, src_len), dst=mask_net(family, dst_len),
                       dport=port_mask, full=True)


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


def gate_order(gate: Gate) -> GateKey:
    """By the gated sets' ids, then the gap entries, then each set's admit entries, the families
    where it is admitted everywhere and what decides its member-wise admits: every field of a
    Gate, as numbers and strings."""
    return (gate.set_ids, tuple(_entry_key(e) for e in gate.gaps),
            tuple((s.set_id, tuple(_entry_key(e) for e in s.admits), s.everywhere, s.basis) for s in gate.sets))


def _entry_key(entry: GapEntry) -> EntryKey:
    return (entry.family, int(entry.src.network_address), entry.src.prefixlen, int(entry.dst.network_address),
            entry.dst.prefixlen, entry.proto, entry.dport, entry.dport_mask)
