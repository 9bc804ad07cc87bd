"""Compiled fragments kept across state versions, keyed by content (issue 15).

A Catalog (one state version) already shares rule and IP set boxes between the lists compiled
from it. A CompileCache outlives catalogs, so that a new state version recompiles only what its
changes touch:

- set token      an IP set's content (type, members, invalid members) -> a small int. An IPSet
                 object that its state can no longer change in place (state/ipset.py: its owner is
                 not the state's current token) is remembered by identity, so its members are read
                 once, not once per version;
- object token   a policy or profile: (kind, name, its protobuf serialized, the set tokens of every
                 set it references) -> a small int;
- set boxes      (family, side, set token) -> the set's boxes;
- rule boxes     (family, rule limit, Rule, the set tokens of the sets the rule references) -> the
                 rule's (P, N) boxes. The Rule is the typed, validated rule (model.Rule, compared
                 field by field), so equal rules share their boxes whichever policy holds them;
- lists          (direction, rule limit, active, the encapsulation config, each tier's name,
                 default action and (policy key, object token) of its live policies, each
                 (profile, object token)) -> the compiled list. Endpoints whose lists have the
                 same key compile once, in one version or across versions.

Every key is content: the same name with another body, or a set with other members, is another
key, so a hit is always the list a cold compile would give (tests/policy/test_compile_cache.py).

Bound: `sweep()` ends a generation. Lists not looked up (or `touch`ed) since the previous sweep
are dropped, then every token and fragment that no remaining list uses. What stays is what the
current endpoints use. `keep_lists=False` keeps only their fragments, not the compiled lists
themselves (for a caller that keeps its own rendered copy of each list, as the VPP driver does).

Pure: no I/O; it holds what the compiler computed and nothing else.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from vppagent.policy.boxes import Box
from vppagent.policy.catalog import Catalog
from vppagent.policy.flat import CompiledList
from vppagent.policy.model import Direction, PolicyError, Rule, WorkloadEndpoint
from vppagent.policy.rule_boxes import RuleBoxes
from vppagent.state.ipset import IPSet
from vppagent.state.model import STAGED_KINDS, PolicyKey, ip_set_ids

ListKey = tuple[Hashable, ...]
RuleResult = tuple[list[Box], list[Box]]
V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    id: int
    value: V
    deps: tuple[int, ...] = ()  # ids of the entries this one was computed from


@dataclass
class _ListEntry:
    compiled: CompiledList | None  # None once dropped (keep_lists=False), the deps stay
    deps: frozenset[int]


@dataclass
class CacheStats:
    """Counters since the cache was made (hits are lookups answered without computing)."""

    lists_compiled: int = 0
    list_hits: int = 0
    rules_computed: int = 0
    rule_hits: int = 0
    sets_computed: int = 0
    set_hits: int = 0
    sweeps: int = 0
    evicted: int = 0


@dataclass
class CacheSize:
    lists: int
    tokens: int
    set_boxes: int
    rule_boxes: int
    boxes: int  # boxes held by set and rule fragments together


class _Table(Generic[V]):
    """Content key -> entry with a unique id (ids are never reused, so a stale id matches nothing)."""

    def __init__(self, next_id: Callable[[], int]) -> None:
        self.entries: dict[Hashable, _Entry[V]] = {}
        self._next_id = next_id

    def get(self, key: Hashable) -> _Entry[V] | None:
        return self.entries.get(key)

    def put(self, key: Hashable, value: V, deps: tuple[int, ...] = ()) -> _Entry[V]:
        entry = self.entries[key] = _Entry(self._next_id(), value, deps)
        return entry

    def keep(self, live: set[int]) -> int:
        """Drop entries whose id is not in `live`; returns how many were dropped."""
        dead = [k for k, e in self.entries.items() if e.id not in live]
        for k in dead:
            del self.entries[k]
        return len(dead)


class CompileCache:
    def __init__(self, *, keep_lists: bool = True) -> None:
        self.keep_lists = keep_lists
        self._counter = 0
        self.tokens: _Table[None] = _Table(self._next_id)  # set and object contents
        self.set_boxes: _Table[list[Box]] = _Table(self._next_id)
        self.rule_boxes: _Table[RuleResult] = _Table(self._next_id)
        self.lists: dict[ListKey, _ListEntry] = {}
        self._used: set[ListKey] = set()  # looked up or touched since the last sweep
        self._recorders: list[set[ListKey]] = []
        # id(IPSet) -> (the set, its token id): only for sets no state can change in place any more.
        self._frozen_sets: dict[int, tuple[IPSet, int]] = {}
        self._views: weakref.WeakKeyDictionary[Catalog, CatalogView] = weakref.WeakKeyDictionary()
        self.stats = CacheStats()

    def _next_id(self) -> int:
        self._counter += 1
        return self._counter

    def view(self, cat: Catalog) -> CatalogView:
        """The cache as seen from one state version (per-catalog memos of the tokens)."""
        found = self._views.get(cat)
        if found is None:
            found = self._views[cat] = CatalogView(self, cat)
        return found

    # -- lists -------------------------------------------------------------------------------
    def get_list(self, key: ListKey) -> CompiledList | None:
        self._mark(key)
        entry = self.lists.get(key)
        if entry is None or entry.compiled is None:
            return None
        self.stats.list_hits += 1
        return entry.compiled

    def put_list(self, key: ListKey, compiled: CompiledList, deps: Iterable[int]) -> None:
        self._mark(key)
        self.stats.lists_compiled += 1
        self.lists[key] = _ListEntry(compiled, frozenset(deps))

    def touch(self, keys: Iterable[ListKey]) -> None:
        """Keep these lists (and what they use) through the next sweep: a caller that serves
        a list from its own copy says so here."""
        for key in keys:
            self._mark(key)

    def _mark(self, key: ListKey) -> None:
        self._used.add(key)
        for recorder in self._recorders:
            recorder.add(key)

    @contextmanager
    def recording(self) -> Iterator[set[ListKey]]:
        """The keys of every list looked up inside the block (to `touch` them later)."""
        keys: set[ListKey] = set()
        self._recorders.append(keys)
        try:
            yield keys
        finally:
            self._recorders.remove(keys)

    # -- the bound ---------------------------------------------------------------------------
    def sweep(self) -> int:
        """End a generation: keep only the lists used since the last sweep and what they use.
        Returns the number of entries dropped."""
        dropped = 0
        for key in [k for k in self.lists if k not in self._used]:
            del self.lists[key]
            dropped += 1
        self._used = set()
        live: set[int] = set()
        for entry in self.lists.values():
            live |= entry.deps
            if not self.keep_lists:
                entry.compiled = None
        # Fragments name what they were computed from (rule boxes -> set boxes, objects -> sets).
        for table in (self.rule_boxes, self.set_boxes, self.tokens):
            for e in table.entries.values():
                if e.id in live:
                    live.update(e.deps)
        for table in (self.rule_boxes, self.set_boxes, self.tokens):
            dropped += table.keep(live)
        self._frozen_sets = {k: v for k, v in self._frozen_sets.items() if v[1] in live}
        self._views = weakref.WeakKeyDictionary()  # their memos may name dropped entries
        self.stats.sweeps += 1
        self.stats.evicted += dropped
        return dropped

    def size(self) -> CacheSize:
        boxes = sum(len(e.value) for e in self.set_boxes.entries.values()) + \
            sum(len(e.value[0]) + len(e.value[1]) for e in self.rule_boxes.entries.values())
        return CacheSize(sum(1 for e in self.lists.values() if e.compiled is not None), len(self.tokens.entries),
                         len(self.set_boxes.entries), len(self.rule_boxes.entries), boxes)


class CatalogView:
    """One catalog's side of the cache: tokens of its objects (each computed once per catalog),
    and rule boxes that draw on the cache's fragments."""

    def __init__(self, cache: CompileCache, cat: Catalog) -> None:
        self.cache = cache
        self.cat: Catalog = cast(Catalog, weakref.proxy(cat))  # weakly: the cache keys views by catalog
        self._set_tokens: dict[str, int] = {}
        self._object_tokens: dict[tuple[str, Hashable], int] = {}
        self._rule_boxes: dict[tuple[int, int], CachedRuleBoxes] = {}

    # -- tokens --------------------------------------------------------------------------------
    def set_token(self, set_id: str) -> int:
        found = self._set_tokens.get(set_id)
        if found is not None:
            return found
        s = self.cat.state.ipsets.get(set_id)
        if s is None:
            raise PolicyError(f"IP set {set_id} is referenced but not in the state")
        cache = self.cache
        frozen = s.owner is None or s.owner is not self.cat.state.token
        known = cache._frozen_sets.get(id(s)) if frozen else None
        if known is not None and known[0] is s:
            token = known[1]
        else:
            content = ("set", s.type, frozenset(s.members), s.invalid)
            entry = cache.tokens.get(content) or cache.tokens.put(content, None)
            token = entry.id
            if frozen:
                cache._frozen_sets[id(s)] = (s, token)  # pins the set: its id is not reused
        self._set_tokens[set_id] = token
        return token

    def policy_token(self, key: PolicyKey) -> int:
        return self._object_token("policy", key)

    def profile_token(self, name: str) -> int:
        return self._object_token("profile", name)

    def _object_token(self, kind: str, key: Hashable) -> int:
        found = self._object_tokens.get((kind, key))
        if found is not None:
            return found
        table = self.cat.state.policies if kind == "policy" else self.cat.state.profiles
        pb = table.get(key)  # type: ignore[call-overload]
        if pb is None:
            self._raise_for(kind, key)
        sets = sorted({s for rule in (*pb.inbound_rules, *pb.outbound_rules) for s in ip_set_ids(rule)})
        if any(s not in self.cat.state.ipsets for s in sets):
            self._raise_for(kind, key)
        set_tokens = tuple(self.set_token(s) for s in sets)
        content = (kind, key, pb.SerializeToString(deterministic=True), set_tokens)
        entry = self.cache.tokens.get(content) or self.cache.tokens.put(content, None, set_tokens)
        self._object_tokens[(kind, key)] = entry.id
        return entry.id

    def _raise_for(self, kind: str, key: Hashable) -> None:
        """The error a cold compile gives for this object (the catalog builds and validates it)."""
        if kind == "policy":
            self.cat.policy(key)  # type: ignore[arg-type]
        else:
            self.cat.profile(key)  # type: ignore[arg-type]
        raise PolicyError(f"{kind} {key}: cannot be compiled")  # not reached: the catalog raised

    def list_key(self, ep: WorkloadEndpoint, d: Direction, rule_limit: int, config: Hashable) -> ListKey:
        """Everything the endpoint's list in `d` depends on, as content (see the module docstring)."""
        if not ep.active:
            return (d.value, rule_limit, False)
        tiers = tuple((t.name, t.default_action,
                       tuple((k, self.policy_token(k)) for k in t.policies(d) if k.kind not in STAGED_KINDS))
                      for t in ep.tiers)
        profiles = tuple((name, self.profile_token(name)) for name in ep.profile_ids)
        return (d.value, rule_limit, True, config, tiers, profiles)

    def list_deps(self, key: ListKey) -> set[int]:
        """The token ids a list key names (its policies', profiles' and, through them, sets')."""
        if len(key) < 6:
            return set()
        tiers, profiles = key[4], key[5]
        deps = {token for _, _, policies in tiers for _, token in policies}  # type: ignore[attr-defined]
        deps |= {token for _, token in profiles}  # type: ignore[attr-defined]
        return deps

    # -- fragments -----------------------------------------------------------------------------
    def rule_boxes(self, family: int, limit: int) -> CachedRuleBoxes:
        found = self._rule_boxes.get((family, limit))
        if found is None:
            found = self._rule_boxes[(family, limit)] = CachedRuleBoxes(self, family, limit)
        return found


class CachedRuleBoxes(RuleBoxes):
    """RuleBoxes whose set and rule boxes come from the cache when their content was seen
    before. `deps`, when set, collects the id of every fragment handed out (for the list)."""

    def __init__(self, view: CatalogView, family: int, limit: int) -> None:
        super().__init__(view.cat, family, limit)
        self.view = view
        self.deps: set[int] | None = None
        self._set_ids: dict[tuple[str, str], int] = {}
        self._rule_ids: dict[int, tuple[Rule, int]] = {}
        self._computing: list[int] | None = None  # set-box ids a rule being computed uses

    def set_boxes(self, set_id: str, side: str) -> list[Box]:
        key = (set_id, side)
        boxes = self.set_cache.get(key)
        if boxes is None:
            cache = self.view.cache
            content = (self.family, side, self.view.set_token(set_id))
            entry = cache.set_boxes.get(content)
            if entry is None:
                cache.stats.sets_computed += 1
                entry = cache.set_boxes.put(content, super().set_boxes(set_id, side))
            else:
                cache.stats.set_hits += 1
                self.set_cache[key] = entry.value
            self._set_ids[key] = entry.id
            boxes = entry.value
        if self._computing is not None:
            self._computing.append(self._set_ids[key])
        return boxes

    def rule_boxes(self, rule: Rule) -> RuleResult:
        known = self._rule_ids.get(id(rule))
        if known is not None and known[0] is rule:
            fid = known[1]
            result = self.rule_cache[id(rule)][1]
        else:
            cache = self.view.cache
            sets = tuple(self.view.set_token(s) for s in (*rule.address_set_ids(), *rule.ip_port_set_ids()))
            content = (self.family, self.limit, rule, sets)
            entry = cache.rule_boxes.get(content)
            if entry is None:
                cache.stats.rules_computed += 1
                self._computing = []
                try:
                    value = self._rule_boxes(rule)
                    entry = cache.rule_boxes.put(content, value, tuple(self._computing))
                finally:
                    self._computing = None
            else:
                cache.stats.rule_hits += 1
            fid, result = entry.id, entry.value
            self.rule_cache[id(rule)] = (rule, result)
            self._rule_ids[id(rule)] = (rule, fid)
        if self.deps is not None:
            self.deps.add(fid)
        return result
