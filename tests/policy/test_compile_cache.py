"""Lists compiled once per catalog: endpoints with the same tiers, profiles and state share one
compile (issue 15), and the shared list is still each endpoint's own and exact. Across state
versions (CompileCache): a change recompiles only the lists it touches, keys are content, and the
cache keeps only what the current endpoints use."""

from __future__ import annotations

import gc
import random
import weakref

import pytest
from google.protobuf import json_format

from tests.policy.helpers import ALLOW_ALL, EP, build_state, tcp, tier
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.cache import CompileCache
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint, first_match
from vppagent.policy.evaluate import verdict
from vppagent.policy.flat import CompiledList
from vppagent.policy.generate import random_case
from vppagent.policy.model import PolicyError
from vppagent.policy.packet import Packet
from vppagent.state.model import DataplaneState, WorkloadKey


def _add_endpoint(state: object, name: str, tiers: list[dict[str, object]]) -> WorkloadKey:
    key = WorkloadKey("k8s", f"default/{name}", "eth0")
    state.apply(json_format.ParseDict({"workload_endpoint_update": {  # type: ignore[attr-defined]
        "id": {"orchestrator_id": key.orchestrator_id, "workload_id": key.workload_id,
               "endpoint_id": key.endpoint_id},
        "endpoint": {"state": "active", "name": name, "ipv4_nets": ["10.65.0.9/32"], "profile_ids": ["p"],
                     "tiers": tiers}}}, felix.ToDataplane()))
    return key


def test_identical_endpoints_share_a_list_and_differing_ones_do_not() -> None:
    tiers = [tier("t", ingress=["web"])]
    state = build_state(policies={"web": ([tcp(80, action="allow")], []), "db": ([tcp(5432, action="allow")], [])},
                        profiles={"p": ALLOW_ALL}, profile_ids=["p"], tiers=tiers)
    twin = _add_endpoint(state, "twin", tiers)
    other = _add_endpoint(state, "other", [tier("t", ingress=["db"])])
    cat = Catalog(state)
    first = compile_endpoint(cat, EP, "ingress")
    second = compile_endpoint(cat, twin, "ingress")
    third = compile_endpoint(cat, other, "ingress")
    assert (first.endpoint, second.endpoint) == (str(EP), str(twin))
    assert second.rules is first.rules  # the same compile, not a second one
    assert third.fingerprint() != first.fingerprint()
    for key, compiled in ((twin, second), (other, third)):
        for text in ("tcp 10.65.1.1:9 > 10.65.0.9:80", "tcp 10.65.1.1:9 > 10.65.0.9:5432"):
            pkt = Packet.parse(text)
            assert first_match(compiled, pkt).action == verdict(cat, key, "ingress", pkt).action, (key, text)


# -- across state versions (policy/cache.py) ------------------------------------------------------


def _set_policy(state: DataplaneState, name: str, inbound: list[dict[str, object]]) -> None:
    state.apply(json_format.ParseDict({"active_policy_update": {
        "id": {"name": name, "namespace": "default"},
        "policy": {"namespace": "default", "inbound_rules": inbound}}}, felix.ToDataplane()))


def _cold(state: DataplaneState, key: WorkloadKey, direction: str = "ingress") -> CompiledList:
    return compile_endpoint(Catalog(state), key, direction)


def _two_tier_state() -> tuple[DataplaneState, WorkloadKey, WorkloadKey]:
    """EP uses web (set s:a) and db (set s:b); `other` uses db only."""
    state = build_state(
        policies={"web": ([tcp(80, action="allow", src_ip_set_ids=["s:a"])], []),
                  "db": ([tcp(5432, action="allow", src_ip_set_ids=["s:b"])], [])},
        ipsets={"s:a": ("NET", ["10.65.1.0/30", "10.65.2.7/32"]), "s:b": ("NET", ["10.65.3.3/32"])},
        profiles={"p": ALLOW_ALL}, profile_ids=["p"], tiers=[tier("t", ingress=["web", "db"])])
    other = _add_endpoint(state, "other", [tier("t", ingress=["db"])])
    return state, EP, other


def _warm(state: DataplaneState, *keys: WorkloadKey) -> tuple[CompileCache, dict[WorkloadKey, CompiledList]]:
    """A cache that has compiled `keys` against `state` and been swept once (one version done)."""
    cache = CompileCache()
    cat = Catalog(state)
    first = {k: compile_endpoint(cat, k, "ingress", cache=cache) for k in keys}
    cache.sweep()
    return cache, first


def test_a_policy_body_changed_under_the_same_name_recompiles_only_its_lists_and_reuses_the_rest() -> None:
    state, ep, other = _two_tier_state()
    cache, first = _warm(state, ep, other)
    computed, compiled = cache.stats.rules_computed, cache.stats.lists_compiled
    changed = state.copy()
    _set_policy(changed, "web", [tcp(8080, action="allow", src_ip_set_ids=["s:a"])])
    cat = Catalog(changed)
    after = {k: compile_endpoint(cat, k, "ingress", cache=cache) for k in (ep, other)}
    assert cache.stats.lists_compiled - compiled == 1, "only the list that holds `web` recompiles"
    assert cache.stats.rules_computed - computed == 2, "one new rule (IPv4 and IPv6); db's boxes reused"
    for k in (ep, other):
        assert after[k].fingerprint() == _cold(changed, k).fingerprint()
    assert after[ep].fingerprint() != first[ep].fingerprint()
    assert after[other].rules is first[other].rules
    pkt = Packet.parse("tcp 10.65.1.2:9 > 10.65.0.2:8080")
    assert first_match(after[ep], pkt).action == verdict(cat, ep, "ingress", pkt).action == "allow"


def test_an_ip_set_member_change_recompiles_only_the_lists_using_the_set() -> None:
    state, ep, other = _two_tier_state()
    cache, _ = _warm(state, ep, other)
    compiled = cache.stats.lists_compiled
    changed = state.copy()
    changed.apply(felix.ToDataplane(ipset_delta_update=felix.IPSetDeltaUpdate(
        id="s:a", added_members=["10.65.9.9/32"])))
    cat = Catalog(changed)
    after = {k: compile_endpoint(cat, k, "ingress", cache=cache) for k in (ep, other)}
    assert cache.stats.lists_compiled - compiled == 1, "`other` does not use s:a"
    pkt = Packet.parse("tcp 10.65.9.9:9 > 10.65.0.2:80")
    assert first_match(after[ep], pkt).action == verdict(cat, ep, "ingress", pkt).action == "allow"
    assert after[ep].fingerprint() == _cold(changed, ep).fingerprint()


def test_a_set_changed_in_place_by_its_own_fold_is_seen() -> None:
    """A set its state still owns takes deltas in place (state/ipset.py): the same object, new
    members. The cache must key it by its members then, not by the object."""
    state, ep, _ = _two_tier_state()
    cache = CompileCache()
    compile_endpoint(Catalog(state), ep, "ingress", cache=cache)
    state.apply(felix.ToDataplane(ipset_delta_update=felix.IPSetDeltaUpdate(id="s:b", added_members=["10.65.4.4/32"])))
    before = state.ipsets["s:b"]
    state.apply(felix.ToDataplane(ipset_delta_update=felix.IPSetDeltaUpdate(id="s:b", added_members=["10.65.5.5/32"])))
    assert state.ipsets["s:b"] is before, "the fold changed the set in place (what this test is about)"
    after = compile_endpoint(Catalog(state), ep, "ingress", cache=cache)
    assert after.fingerprint() == _cold(state, ep).fingerprint()
    pkt = Packet.parse("tcp 10.65.5.5:9 > 10.65.0.2:5432")
    assert first_match(after, pkt).action == "allow"


def test_a_change_to_n_endpoints_with_identical_lists_compiles_once() -> None:
    tiers = [tier("t", ingress=["web"])]
    state = build_state(policies={"web": ([tcp(80, action="allow")], [])}, profiles={"p": ALLOW_ALL},
                        profile_ids=["p"], tiers=tiers)
    keys = [EP] + [_add_endpoint(state, f"twin{i}", tiers) for i in range(5)]
    cache = CompileCache()
    cat = Catalog(state)
    for k in keys:
        compile_endpoint(cat, k, "ingress", cache=cache)
    changed = state.copy()
    _set_policy(changed, "web", [tcp(443, action="allow")])
    compiled = cache.stats.lists_compiled
    cat = Catalog(changed)
    lists = [compile_endpoint(cat, k, "ingress", cache=cache) for k in keys]
    assert cache.stats.lists_compiled - compiled == 1
    assert [c.endpoint for c in lists] == [str(k) for k in keys]


def test_the_cache_keeps_only_what_current_endpoints_use() -> None:
    state, ep, other = _two_tier_state()
    cache, _ = _warm(state, ep, other)
    # Next version: `web` changed, and only `other` still compiles (say EP went away).
    changed = state.copy()
    _set_policy(changed, "web", [tcp(8080, action="allow", src_ip_set_ids=["s:a"])])
    compile_endpoint(Catalog(changed), other, "ingress", cache=cache)
    assert cache.sweep() > 0
    alone = CompileCache()
    compile_endpoint(Catalog(changed), other, "ingress", cache=alone)
    alone.sweep()
    assert cache.size() == alone.size(), "what is left is exactly what `other` needs"
    cache.sweep()  # nothing asked for since: everything goes
    assert cache.size().tokens == cache.size().rule_boxes == cache.size().lists == 0


def test_keep_lists_false_keeps_fragments_but_not_the_lists() -> None:
    state, ep, _ = _two_tier_state()
    cache = CompileCache(keep_lists=False)
    with cache.recording() as keys:
        compile_endpoint(Catalog(state), ep, "ingress", cache=cache)
    cache.sweep()
    assert cache.size().lists == 0 and cache.size().rule_boxes > 0
    cache.touch(keys)  # a caller serving the list from its own copy keeps its fragments
    cache.sweep()
    assert cache.size().rule_boxes > 0
    computed = cache.stats.rules_computed
    compile_endpoint(Catalog(state.copy()), ep, "ingress", cache=cache)
    assert cache.stats.rules_computed == computed, "every rule's boxes came from the cache"


def test_one_cache_across_random_states_gives_what_cold_compiles_give() -> None:
    """Random states reuse names (tiers, policies, sets) with other content: one cache, fed
    one state after another (folded into one evolving state, sets changed in place too), must
    give exactly the cold compile each time."""
    rng = random.Random(15)
    evolving = DataplaneState()
    cache = CompileCache()
    for i in range(150):
        case = random_case(rng)
        for m in case.messages:
            evolving.apply(m)
        if i % 3 == 0:  # a delta to a set this state owns: changed in place
            for set_id, s in list(evolving.ipsets.items()):
                if s.type.name == "NET":
                    evolving.apply(felix.ToDataplane(ipset_delta_update=felix.IPSetDeltaUpdate(
                        id=set_id, added_members=[f"10.65.{i % 250}.{rng.randrange(256)}/32"])))
                    break
        for direction in ("ingress", "egress"):
            try:
                cold = _cold(evolving, case.endpoint, direction)
            except PolicyError as exc:
                with pytest.raises(PolicyError) as cached_exc:
                    compile_endpoint(Catalog(evolving), case.endpoint, direction, cache=cache)
                assert str(cached_exc.value) == str(exc)
                continue
            cached = compile_endpoint(Catalog(evolving), case.endpoint, direction, cache=cache)
            assert cached.fingerprint() == cold.fingerprint(), f"step {i} {direction}"
            if i % 3 == 1:  # the next version changes nothing this list uses: served as it is
                again = compile_endpoint(Catalog(evolving.copy()), case.endpoint, direction, cache=cache)
                assert again.rules is cached.rules, f"step {i} {direction}"
        if i % 5 == 4:
            cache.sweep()
    assert cache.stats.list_hits > 0 and cache.stats.rule_hits > 0, "the cache was exercised"


def test_a_catalog_is_freed_once_dropped_with_or_without_a_cache() -> None:
    """The per-catalog memos (shared rule boxes, lists, cache views) are keyed weakly by the
    catalog: nothing they hold may keep it, and all it computed, alive."""
    state, ep, _ = _two_tier_state()
    cache = CompileCache()
    refs = []
    for use_cache in (None, cache):
        cat = Catalog(state)
        compile_endpoint(cat, ep, "ingress", cache=use_cache)
        refs.append(weakref.ref(cat))
        del cat
    gc.collect()
    assert [r() for r in refs] == [None, None]
