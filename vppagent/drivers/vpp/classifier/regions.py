"""Box regions of compiled lists, as the gate needs them (gate.py): where a first-match list
allows, clipped to an area, and a region as classifier entries (prefix, prefix, protocol,
destination-port block).

The gate reads a compiled list as a `View`: per family its rules' boxes and actions. A view
never depends on the endpoint's addresses: the driver shares one gate among the endpoints with
the same tiers and profiles (acl/lists.py), whatever their addresses.

Under 500 lines: a View, its Slices and the index members are read through share their memos
(what makes one compile serve every set of a list), and a slice's admit regions are spliced from
its parent's, so they stay in one module; regions as classifier entries live in entries.py (its
names are re-exported here for the modules that read them from this one), and the resumed
subtraction in trails.py.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from vppagent.drivers.vpp.classifier.entries import EPHEMERAL_START as EPHEMERAL_START
from vppagent.drivers.vpp.classifier.entries import GapEntry as GapEntry
from vppagent.drivers.vpp.classifier.entries import Unfit as Unfit
from vppagent.drivers.vpp.classifier.entries import check_service_ports as check_service_ports
from vppagent.drivers.vpp.classifier.entries import entries as entries
from vppagent.drivers.vpp.classifier.entries import net as net
from vppagent.drivers.vpp.classifier.entries import port_blocks as port_blocks
from vppagent.drivers.vpp.classifier.trails import Trails
from vppagent.policy.boxes import FULL_L4, Box, full_box, intersect, subtract_all, width
from vppagent.policy.flat import CompiledList, FlatRule
from vppagent.policy.model import TCP, UDP

BOX_LIMIT = 512  # beyond this the region is too ragged for a few classifier tables anyway


def rule_box(rule: FlatRule) -> Box:
    return rule.box()


Ruled = tuple[Box, str]  # a rule's box and action
Basis = tuple[tuple[Box, ...], tuple[Ruled, ...], str]  # drop boxes, the list's rules there (in order), default
Dims = tuple[int, int, int, int, int, int]  # protocol, source port and destination port ranges
Marked = tuple[Box, str, "int | None"]  # a rule's part, any source port where it had a marker; the marker
# A view's parts inside a box without a marker, and per marker its parts (each after how many of those)
Split = tuple[list[Ruled], dict[int, list[tuple[int, Ruled]]]]


@dataclass
class Indexed:
    """The parts of a view's rules inside one box, by source prefix (memberwise.py): (length,
    prefix) -> positions in `parts`; `lengths` in order; each part without its source, as needed."""

    parts: list[Marked]
    index: dict[tuple[int, int], list[int]]
    lengths: list[int]
    unsourced: dict[int, Ruled] = field(default_factory=dict)
    _sourceless: dict[int | None, tuple[int, ...]] = field(default_factory=dict)
    _prefixes: dict[int, set[int]] | None = None

    def prefixes(self) -> dict[int, set[int]]:
        """The parts' sources by length (but /0), remembered."""
        if self._prefixes is None:
            self._prefixes = {}
            for length, prefix in self.index:
                if length:
                    self._prefixes.setdefault(length, set()).add(prefix)
        return self._prefixes

    def sourceless(self, marker: int | None) -> tuple[int, ...]:
        """Positions of the parts with no source (they meet every member) read at `marker`:
        without a marker or with this one (remembered: every set of the list asks)."""
        found = self._sourceless.get(marker)
        if found is None:
            parts = self.parts
            found = self._sourceless[marker] = tuple(i for i in self.index.get((0, 0), ())
                                                     if parts[i][2] is None or parts[i][2] == marker)
        return found

    @staticmethod
    def of(parts: list[Marked]) -> Indexed:
        index: dict[tuple[int, int], list[int]] = {}
        for i, part in enumerate(parts):
            box = part[0]
            index.setdefault((box.src_len, box.src), []).append(i)
        return Indexed(parts, index, sorted({n for n, _ in index}))


@dataclass
class View:
    """A first-match list as the gate reads it: per family (box, action) in order, the default.
    Everything asked of a box is remembered (every gated set of a list asks about the same few
    ports), an unfit answer too; the rules meeting a box are found through their L4 dimensions
    (a list has a few hundred distinct ones), not by intersecting every rule."""

    rules: dict[int, list[Ruled]]
    default: str
    _meeting: dict[tuple[int, Box], list[Ruled]] = field(default_factory=dict, repr=False)
    _allowed: dict[tuple[int, Box], list[Box] | str] = field(default_factory=dict, repr=False)
    _denied: dict[tuple[int, Box], list[Box] | str] = field(default_factory=dict, repr=False)
    _dims: dict[int, list[tuple[Dims, list[int]]]] = field(default_factory=dict, repr=False)
    _marked: dict[tuple[int, Box], list[Marked]] = field(default_factory=dict, repr=False)
    _by_marker: dict[int, dict[int, list[Ruled]]] = field(default_factory=dict, repr=False)
    _indexed: dict[tuple[int, Box, bool], Indexed] = field(default_factory=dict, repr=False)
    _split: dict[tuple[int, Box], Split] = field(default_factory=dict, repr=False)
    _allows: dict[tuple[int, Box], list[int]] = field(default_factory=dict, repr=False)
    _shared_allowed: dict[tuple[int, Box, int], list[Box] | str] = field(default_factory=dict, repr=False)
    _scans: dict[tuple[int, Box, Box], tuple[int, list[int]]] = field(default_factory=dict, repr=False)
    _trails: dict[int, Trails] = field(default_factory=dict, repr=False)

    @staticmethod
    def of(compiled: CompiledList) -> View:
        rules: dict[int, list[Ruled]] = {4: [], 6: []}
        for r in compiled.rules:
            rules[r.family].append((rule_box(r), r.action))
        return View(rules, compiled.default_action)

    def _candidates(self, family: int, within: Box) -> list[int]:
        """Positions of the rules whose L4 dimensions meet `within`'s, in order."""
        groups = self._dims.get(family)
        if groups is None:
            by_dims: dict[Dims, list[int]] = defaultdict(list)
            for i, (box, _) in enumerate(self.rules[family]):
                by_dims[box[4:]].append(i)
            groups = self._dims[family] = list(by_dims.items())
        _, _, _, _, plo, phi, alo, ahi, blo, bhi = within
        found = [i for (p0, p1, a0, a1, b0, b1), positions in groups
                 if p0 <= phi and plo <= p1 and a0 <= ahi and alo <= a1 and b0 <= bhi and blo <= b1 for i in positions]
        found.sort()
        return found

    def meeting(self, family: int, within: Box) -> list[Ruled]:
        """The rules' parts inside `within`, in order (remembered)."""
        key = (family, within)
        found = self._meeting.get(key)
        if found is None:
            w, rules = width(family), self.rules[family]
            src, src_len = within[0], within[1]
            found = self._meeting[key] = []
            for i in self._candidates(family, within):
                box = rules[i][0]
                # (the source test of intersect first, inline: most rules of a list have one
                # host or prefix as source, and most boxes asked about lie apart from it)
                shift = w - (box[1] if box[1] < src_len else src_len)
                if shift < w and (box[0] >> shift) != (src >> shift):
                    continue
                if (part := intersect(box, within, w)) is not None:
                    found.append((part, rules[i][1]))
        return found

    def allowed(self, family: int, within: Box) -> list[Box]:
        """The part of `within` the list allows, as boxes (remembered); Unfit when too ragged."""
        key = (family, within)
        found = self._allowed.get(key)
        if found is None:
            try:
                found = allowed_by(self.meeting(family, within), self.default, family, within, clipped=True)
            except Unfit as exc:
                found = str(exc)
            self._allowed[key] = found
        if isinstance(found, str):
            raise Unfit(found)
        return found

    def denied(self, family: int, within: Box) -> list[Box]:
        """The part of `within` the list does not allow (remembered); Unfit when too ragged."""
        key = (family, within)
        found = self._denied.get(key)
        if found is None:
            try:
                found = _minus([within], self.allowed(family, within), width(family))
            except Unfit as exc:
                found = str(exc)
            self._denied[key] = found
        if isinstance(found, str):
            raise Unfit(found)
        return found

    def marked_meeting(self, family: int, within: Box) -> list[Marked]:
        """meeting(), each TCP/UDP part with its source port read as a marker (Slice): None for
        any source port (or no ports), else the one port, with any source port. Unfit for a
        range that is neither."""
        key = (family, within)
        found = self._marked.get(key)
        if found is None:
            found = []
            lo, hi = FULL_L4
            for box, action in self.meeting(family, within):
                if (box[6] == lo and box[7] == hi) or not _has_ports(box):
                    found.append((box, action, None))
                elif box[6] == box[7]:
                    found.append((_any_source_port(box), action, box[6]))
                else:
                    raise Unfit("a source port range that is no marker")
            self._marked[key] = found
        return found

    def split_meeting(self, family: int, within: Box) -> Split:
        """marked_meeting() apart: the parts without a marker, and per marker its parts, each
        with how many of those come before it (a Slice splices them: slicing, not a filter of
        every part per set)."""
        key = (family, within)
        found = self._split.get(key)
        if found is None:
            shared: list[Ruled] = []
            by_marker: dict[int, list[tuple[int, Ruled]]] = {}
            for box, action, marker in self.marked_meeting(family, within):
                if marker is None:
                    shared.append((box, action))
                else:
                    by_marker.setdefault(marker, []).append((len(shared), (box, action)))
            found = self._split[key] = (shared, by_marker)
        return found

    def indexed(self, family: int, within: Box, marked: bool = False) -> Indexed:
        """meeting() (marked: marked_meeting()) indexed by source (remembered)."""
        key = (family, within, marked)
        found = self._indexed.get(key)
        if found is None:
            parts: list[Marked] = self.marked_meeting(family, within) if marked else \
                [(b, a, None) for b, a in self.meeting(family, within)]
            found = self._indexed[key] = Indexed.of(parts)
        return found

    def shared_allows(self, family: int, within: Box) -> list[int]:
        """Positions of the allow parts among split_meeting()'s parts without a marker."""
        key = (family, within)
        found = self._allows.get(key)
        if found is None:
            shared = self.split_meeting(family, within)[0]
            found = self._allows[key] = [j for j, (_, action) in enumerate(shared) if action == "allow"]
        return found

    def shared_allowed(self, family: int, within: Box, j: int) -> list[Box]:
        """The j-th part without a marker minus those before it (remembered: every slice whose
        own parts miss it asks); Unfit as _minus says."""
        key = (family, within, j)
        found = self._shared_allowed.get(key)
        if found is None:
            shared = self.split_meeting(family, within)[0]
            try:
                found = _minus([shared[j][0]], [b for b, _ in shared[:j]], width(family))
            except Unfit as exc:
                found = str(exc)
            self._shared_allowed[key] = found
        if isinstance(found, str):
            raise Unfit(found)
        return found

    def own_minus(self, family: int, within: Box, box: Box, before: int, placed: list[tuple[int, Box]]) -> list[Box]:
        """A slice's own part `box`, spliced after `before` parts without a marker and after
        the slice's `placed` parts, minus every part before it: _minus's answer, with the parts
        without a marker meeting it found once per list and the subtraction resumed (trails.py)."""
        w = width(family)
        shared = self.split_meeting(family, within)[0]
        scan = self._scans.get((family, within, box))
        if scan is None:
            scan = self._scans[(family, within, box)] = (0, [])
        scanned, meets = scan
        if scanned < before:
            meets = meets + [j for j in range(scanned, before) if intersect(shared[j][0], box, w) is not None]
            self._scans[(family, within, box)] = (before, meets)
        cuts = [(j, 1, shared[j][0]) for j in meets[:bisect.bisect_left(meets, before)]]
        cuts += [(b, 0, c) for b, c in placed if intersect(c, box, w) is not None]
        cuts.sort(key=lambda c: (c[0], c[1]))  # (in list order: an own part comes before shared[b])
        ordered = tuple(sorted((c for _, _, c in cuts), key=lambda c: -_volume(c, w)))
        trails = self._trails.get(family)
        if trails is None:
            trails = self._trails[family] = Trails(w, BOX_LIMIT)
        region = trails.minus(box, ordered)
        if region is None:
            raise Unfit("region too ragged")
        return region

    def by_marker(self, family: int) -> dict[int, list[Ruled]]:
        """Per marker, the TCP/UDP rules with that one source port, with any source port (in
        order). Unfit if a TCP/UDP rule has a source port range that is neither any port nor
        one port (one spanning markers, were the compiler to join them, would be missing from
        every region)."""
        found = self._by_marker.get(family)
        if found is None:
            found = {}
            for b, action in self.rules[family]:
                if not _has_ports(b) or (b.a_lo, b.a_hi) == FULL_L4:
                    continue
                if b.a_lo != b.a_hi:
                    raise Unfit("a source port range that is no marker")
                found.setdefault(b.a_lo, []).append((_any_source_port(b), action))
            self._by_marker[family] = found
        return found


@dataclass
class Slice(View):
    """A view of a marked list (gate.py, "markers") at source port `marker` (None: at a port that
    is no marker), with any source port: of the TCP/UDP rules those with any source port and
    those with exactly `marker`. Unfit if a TCP/UDP rule has another source port range."""

    parent: View | None = None
    marker: int | None = None
    markers: AbstractSet[int] = frozenset()

    @staticmethod
    def at(parent: View, marker: int | None, markers: AbstractSet[int]) -> Slice:
        return Slice({}, parent.default, parent=parent, marker=marker, markers=markers)

    def meeting(self, family: int, within: Box) -> list[Ruled]:
        key = (family, within)
        found = self._meeting.get(key)
        if found is None:
            assert self.parent is not None
            shared, by_marker = self.parent.split_meeting(family, within)
            if not by_marker.keys() <= self.markers:
                raise Unfit("a source port range that is no marker")
            own = by_marker.get(self.marker) if self.marker is not None else None
            if not own:
                found = shared  # (read only, like every answer here)
            else:
                found, done = [], 0
                for before, part in own:
                    found += shared[done:before]
                    found.append(part)
                    done = before
                found += shared[done:]
            self._meeting[key] = found
        return found

    def allowed(self, family: int, within: Box) -> list[Box]:
        """View.allowed, from the parent's parts without a marker, shared by every slice: an
        allow part of those that none of this slice's own parts meets is worked out once per
        list (`View.shared_allowed`), and each own part is its box minus the earlier parts
        meeting it, resumed from what another slice's same box left (trails.py). The same
        boxes in the same order as allowed_by on meeting() gives, and Unfit as it says."""
        key = (family, within)
        found = self._allowed.get(key)
        if found is None:
            try:
                found = self._spliced_allowed(family, within)
            except Unfit as exc:
                found = str(exc)
            self._allowed[key] = found
        if isinstance(found, str):
            raise Unfit(found)
        return found

    def _spliced_allowed(self, family: int, within: Box) -> list[Box]:
        assert self.parent is not None
        parent = self.parent
        spliced = self.meeting(family, within)  # (Unfit for a port that is no marker, as meeting says)
        shared, by_marker = parent.split_meeting(family, within)
        own = by_marker.get(self.marker) if self.marker is not None else None
        if not own or self.default == "allow":
            return allowed_by(spliced, self.default, family, within, clipped=True)
        if sum(action == "allow" for _, action in spliced) > BOX_LIMIT:
            raise Unfit("region too ragged")
        w = width(family)
        out: list[Box] = []
        placed: list[tuple[int, Box]] = []  # own parts so far: (parts without a marker before it, box)
        allows = parent.shared_allows(family, within)
        k = 0
        for j in [*allows, len(shared)]:
            while k < len(own) and own[k][0] <= j:  # own parts spliced in before shared[j]
                before, (box, action) = own[k]
                if action == "allow":
                    out += parent.own_minus(family, within, box, before, placed)
                placed.append((before, box))
                k += 1
            if j == len(shared):
                break
            box = shared[j][0]
            if any(intersect(b, box, w) is not None for _, b in placed):
                earlier = [b for _, b in _merged(shared, j, placed)]
                out += _minus([box], earlier, w)
            else:
                out += parent.shared_allowed(family, within, j)
            if len(out) > BOX_LIMIT:
                raise Unfit("region too ragged")
        if len(out) > BOX_LIMIT:
            raise Unfit("region too ragged")
        return out

    def indexed(self, family: int, within: Box, marked: bool = False) -> Indexed:
        """The parent's marked parts (every marker: shared by the slices; the reader keeps
        those with no marker or this one)."""
        assert self.parent is not None
        self.meeting(family, within)  # (Unfit for a port that is no marker, as meeting says)
        return self.parent.indexed(family, within, True)


def _merged(shared: list[Ruled], j: int, placed: list[tuple[int, Box]]) -> list[tuple[int, Box]]:
    """shared[:j] with the placed own parts spliced in (each before shared[its before])."""
    out: list[tuple[int, Box]] = []
    done = 0
    for before, box in placed:
        out += [(i, b) for i, (b, _) in enumerate(shared[done:before], done)]
        out.append((before, box))
        done = before
    out += [(i, b) for i, (b, _) in enumerate(shared[done:j], done)]
    return out


def marked_region(view: View, family: int, marker: int) -> list[Box]:
    """Where the rules with source port `marker` match, with any source port, as disjoint boxes.
    Unfit if a TCP/UDP rule has a source port range that is neither any port nor one marker (one
    spanning markers, were the compiler to join them, would be missing from every region)."""
    boxes = view.by_marker(family).get(marker)
    return allowed_by([(b, "allow") for b, _ in boxes], "deny", family, full_box()) if boxes else []


def _any_source_port(box: Box) -> Box:
    """The box with any source port (a Box made directly: _replace costs more than the rest)."""
    return tuple.__new__(Box, (box[0], box[1], box[2], box[3], box[4], box[5], FULL_L4[0], FULL_L4[1], box[8], box[9]))


def _has_ports(box: Box) -> bool:
    return box.proto_lo <= TCP <= box.proto_hi or box.proto_lo <= UDP <= box.proto_hi


def allowed_by(rules: Sequence[Ruled], default: str, family: int, within: Box, clipped: bool = False) -> list[Box]:
    """The part of `within` the rules allow (first match), as disjoint boxes. Unfit beyond
    BOX_LIMIT pieces, and at once when more than BOX_LIMIT allow rules meet `within` (e.g. named
    ports: one destination each): Unfit only ever keeps a set in the ACL, or works P_i out per
    member, so a quick answer that is sometimes too cautious costs rules, never exactness.
    `clipped`: every rule's box already lies inside `within` (View.meeting's parts)."""
    if sum(action == "allow" for _, action in rules) > BOX_LIMIT:
        raise Unfit("region too ragged")
    w = width(family)
    earlier: list[Box] = []
    out: list[Box] = []
    for rule, action in rules:
        box = rule if clipped else intersect(rule, within, w)
        if box is None:
            continue
        if action == "allow":
            out += _minus([box], earlier, w)
            if len(out) > BOX_LIMIT:
                raise Unfit("region too ragged")
        earlier.append(box)
    if default == "allow":
        out += _minus([within], earlier, w)
    return out


def basis(view: View, family: int, drops: list[Box]) -> Basis:
    """What decides where the list allows inside `drops` (disjoint): its rules' parts in each,
    in order."""
    return tuple(drops), tuple(r for d in drops for r in view.meeting(family, d)), view.default


def allowed_in(view: View, family: int, areas: list[Box]) -> list[Box]:
    return [box for area in areas for box in view.allowed(family, area)]


def denied_in(view: View, family: int, areas: list[Box]) -> list[Box]:
    """The part of `areas` the list does not allow."""
    return [box for area in areas for box in view.denied(family, area)]


def _volume(box: Box, w: int) -> int:
    """log2 of the packets in the box, about (to cut the large boxes first)."""
    return (2 * w - box.src_len - box.dst_len + (box.proto_hi - box.proto_lo + 1).bit_length()
            + (box.a_hi - box.a_lo + 1).bit_length() + (box.b_hi - box.b_lo + 1).bit_length())


def _minus(boxes: list[Box], cuts: list[Box], w: int) -> list[Box]:
    # Largest cuts first: the result is the same, but a few wide cuts (a /10 deny, a default)
    # leave little for thousands of /32 cuts to split, where the other order is too ragged.
    if len(boxes) == 1:
        one = boxes[0]
        src, src_len = one[0], one[1]
        meet = []
        for c in cuts:  # (the source test of intersect first, inline, as in View.meeting)
            shift = w - (c[1] if c[1] < src_len else src_len)
            if (shift == w or (c[0] >> shift) == (src >> shift)) and intersect(c, one, w) is not None:
                meet.append(c)
    else:
        meet = [c for c in cuts if any(intersect(c, b, w) is not None for b in boxes)]
    region = subtract_all(boxes, sorted(meet, key=lambda c: -_volume(c, w)), w, BOX_LIMIT)
    if region is None:
        raise Unfit("region too ragged")
    return region


def disjoint(a: list[Box], b: list[Box], family: int) -> bool:
    w = width(family)
    return all(intersect(x, y, w) is None for x in a for y in b)
